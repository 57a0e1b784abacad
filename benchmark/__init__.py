"""hatswap: how much does each continual-learning strategy forget, and what does it cost?"""

__version__ = "0.1.0"
