"""What several strategies share: importance estimates (EWC, SI, MAS), an episodic memory."""
