"""ftkit's compact RL core: rollouts, advantages and clipped updates against gyms (`ftkit rl`)."""

# Where `ftkit rl` starts when neither the recipe nor --model says: the flagship SFT recipe's output.
DEFAULT_MODEL = "runs/gpt2_math/model"
