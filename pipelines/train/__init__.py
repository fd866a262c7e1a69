"""Training on a build: readers of the shards for training loops (loaders.py). Training loops
of vidcurate's own models (the retriever, the student captioner) go here too; operators never
import them: the link is a checkpoint folder."""
