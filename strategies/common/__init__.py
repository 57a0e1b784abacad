"""What several strategies share: importance estimates (EWC, SI, MAS), an episodic memory, the prompt methods' network
(L2P, DualPrompt, CODA-Prompt: prompting.py)."""
