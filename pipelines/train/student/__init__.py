"""Training the student captioner (Video DataFlywheel's refinement model) with noise control."""
