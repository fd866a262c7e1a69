"""Fine-tuning and evaluating the caption-selection retriever on human "best caption" judgments."""
