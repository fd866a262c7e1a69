"""The video-text retriever that selects captions (Panda-70M 3.3): model, config, checkpoints."""
from vidcurate.operators.models.retriever.checkpoint import (create_retriever, is_retriever_checkpoint,  # noqa: F401
                                                             load_retriever, load_training_state, resolve_device,
                                                             save_retriever)
from vidcurate.operators.models.retriever.config import RetrieverConfig, TextTowerConfig, VideoTowerConfig  # noqa: F401
from vidcurate.operators.models.retriever.model import Retriever  # noqa: F401
