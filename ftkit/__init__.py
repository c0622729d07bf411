"""ftkit: fine-tune language models and train them with RL against text gyms you build yourself.

    ftkit sft recipes/gpt2_math.yaml
"""

__version__ = "0.1.0"
