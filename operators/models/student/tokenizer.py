"""The student's tokenizer: a pretrained decoder's own, or a byte-level BPE learned from the captions.

A scratch decoder has no vocabulary of its own, so one is learned (Hugging Face ``tokenizers``)
from the captions it is first trained on, at most ``vocab_size`` tokens, with three special
tokens (``<pad>``, ``<bos>``, ``<eos>``), and saved with the checkpoint like any tokenizer.
Byte-level BPE has no unknown token: a later caption with new words still tokenises.
"""
from __future__ import annotations

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"


def learn_tokenizer(captions: list[str], vocab_size: int):
    """A PreTrainedTokenizerFast learned from ``captions``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if not captions:
        raise ValueError("no captions to learn the student's tokenizer from")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[PAD, BOS, EOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(captions, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token=PAD, bos_token=BOS, eos_token=EOS)


def special_ids(tokenizer) -> tuple[int, int, int]:
    """(pad, bos, eos) ids; a pretrained LM without a pad or bos token uses its eos for them."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the decoder's tokenizer has no end-of-sequence token")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else eos
    return pad, bos, eos
