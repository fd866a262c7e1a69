"""The student captioner (Panda-70M 3.4, the refinement model of Video DataFlywheel): model, config, checkpoints."""
from vidcurate.operators.models.student.checkpoint import (create_student, load_student, resolve_device,  # noqa: F401
                                                           save_student)
from vidcurate.operators.models.student.config import (DECODING_PRESETS, DecoderConfig, DecodingConfig,  # noqa: F401
                                                       StudentConfig)
from vidcurate.operators.models.student.model import StudentCaptioner  # noqa: F401
