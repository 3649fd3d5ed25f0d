"""agentrft: self-hosted reinforcement fine-tuning of tool-using agents."""

__version__ = "0.1.0"
