"""Build datasets for fine-tuning and RL: from gyms, from model rollouts and from files."""
