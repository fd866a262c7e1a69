"""Tiny RANDOMLY INITIALISED transformers models, saved to folders like real checkpoints.

Each builder creates a real transformers class from a small config (two layers, 32-wide),
a word-level tokenizer built locally with the `tokenizers` library (plain English words, so
decoded outputs are words) and the model's own processor with small image sizes, and saves
them with ``save_pretrained``. The teachers then load the folder exactly as a user config
would (``model: /path/to/folder``).

The weights are random: whatever these models generate is meaningless word salad, never
a caption. Tests and ``vidcurate bench teachers`` use them to exercise and time the
plumbing (batching, images, provenance, failures), never for text.

  llava     LlavaForConditionalGeneration (CLIP vision tower + Llama), LlavaProcessor
  idefics3  Idefics3ForConditionalGeneration (SmolVLM v1's class; SigLIP-style vision + Llama)
  blip      BlipForConditionalGeneration (image captioner)
  git       GitForCausalLM (image captioner)
  llama     LlamaForCausalLM (text only), tokenizer with a chat template
  clip      CLIPModel (image and text towers), CLIPImageProcessor at 32 px: the retriever's
            pretrained video tower (and, as ``text.model: same``, its text tower)
"""
from __future__ import annotations

WORDS = ("a an the man woman child dog cat horse bird car bus street bicycle rabbit city road tree forest sky "
         "water river grass field house room table window runs walks sits stands drives rides jumps looks plays "
         "eats holds opens at in on with near under over and of is are red blue green white black small big "
         "old young bright dark slowly quickly video image frame").split()
PROMPT_WORDS = "please faithfully summarize one sentence user assistant system title description subtitles".split()
TINY = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2)
TINY_LM = dict(TINY, num_key_value_heads=2, max_position_embeddings=512)

# ChatML-style template with image placeholders, the shape of Qwen/SmolLM templates.
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% if m['content'] is string %}{{ m['content'] }}"
          "{% else %}{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>{% else %}{{ c['text'] }}"
          "{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
# Idefics3 / SmolVLM's own template.
IDEFICS3 = ("<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
            "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
            "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
            "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n"
            "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}")


def word_tokenizer(specials: list[str], **roles):
    """A fast word-level tokenizer: ``specials`` first (ids 0..), then punctuation and WORDS.

    ``roles`` maps pad_token/unk_token/bos_token/... to entries of ``specials``; every other
    special is an additional special token (skipped when decoding).
    """
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(dict.fromkeys([*specials, ".", ",", ":", "'", *WORDS, *PROMPT_WORDS]))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=roles["unk_token"]))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    extra = [s for s in specials if s not in roles.values()]
    return PreTrainedTokenizerFast(tokenizer_object=tok, additional_special_tokens=extra, **roles)


def _chat_tokenizer(extra: list[str]):
    return word_tokenizer(["<pad>", "<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>", *extra],
                          pad_token="<pad>", unk_token="<unk>", bos_token="<s>", eos_token="</s>")


def _lm_ids(tokenizer) -> dict:
    return dict(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id)


def _pil(name: str):
    """The PIL image processor class when torchvision is absent (as here), else the default one."""
    import transformers
    from transformers.utils import is_torchvision_available

    return getattr(transformers, name if is_torchvision_available() else f"{name}Pil")


def build_llava(folder: str) -> None:
    import transformers as T

    tok = _chat_tokenizer(["<image>"])
    tok.chat_template = CHATML
    config = T.LlavaConfig(
        vision_config=T.CLIPVisionConfig(**TINY, image_size=32, patch_size=8),
        text_config=T.LlamaConfig(**TINY_LM, **_lm_ids(tok)),
        image_token_id=tok.convert_tokens_to_ids("<image>"), vision_feature_layer=-1,
        vision_feature_select_strategy="default")
    T.LlavaForConditionalGeneration(config).save_pretrained(folder)
    image_processor = _pil("CLIPImageProcessor")(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    # 32x32 / 8x8 patches = 16 image tokens (+CLS, dropped by the "default" feature strategy)
    T.LlavaProcessor(image_processor=image_processor, tokenizer=tok, patch_size=8, num_additional_image_tokens=1,
                     vision_feature_select_strategy="default", chat_template=CHATML).save_pretrained(folder)


def build_idefics3(folder: str) -> None:
    import transformers as T

    extra = ["<end_of_utterance>", "<fake_token_around_image>", "<image>", "<global-img>",
             *(f"<row_{i + 1}_col_{j + 1}>" for i in range(6) for j in range(6))]
    tok = _chat_tokenizer(extra)
    config = T.Idefics3Config(
        text_config=dict(model_type="llama", **TINY_LM, **_lm_ids(tok)),
        vision_config=dict(**TINY, image_size=32, patch_size=8),
        image_token_id=tok.convert_tokens_to_ids("<image>"), scale_factor=2, pad_token_id=tok.pad_token_id)
    T.Idefics3ForConditionalGeneration(config).save_pretrained(folder)
    image_processor = _pil("Idefics3ImageProcessor")(size={"longest_edge": 32}, max_image_size={"longest_edge": 32},
                                                      do_image_splitting=False)
    # (32 / 8) ** 2 patches / scale_factor ** 2 = 4 image tokens per image
    T.Idefics3Processor(image_processor=image_processor, tokenizer=tok, image_seq_len=4,
                        chat_template=IDEFICS3).save_pretrained(folder)


def _bert_tokenizer():
    return word_tokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[DEC]"], pad_token="[PAD]", unk_token="[UNK]",
                          cls_token="[CLS]", sep_token="[SEP]", bos_token="[DEC]")


def build_blip(folder: str) -> None:
    import transformers as T

    tok = _bert_tokenizer()
    config = T.BlipConfig(
        text_config=dict(**TINY, vocab_size=len(tok), max_position_embeddings=64, pad_token_id=tok.pad_token_id,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.sep_token_id, sep_token_id=tok.sep_token_id,
                         encoder_hidden_size=32),
        vision_config=dict(**TINY, image_size=32, patch_size=8), projection_dim=16)
    T.BlipForConditionalGeneration(config).save_pretrained(folder)
    T.BlipProcessor(image_processor=_pil("BlipImageProcessor")(size={"height": 32, "width": 32}),
                    tokenizer=tok).save_pretrained(folder)


def build_git(folder: str) -> None:
    import transformers as T

    tok = _bert_tokenizer()
    config = T.GitConfig(vision_config=dict(**TINY, image_size=32, patch_size=8), **TINY, vocab_size=len(tok),
                         max_position_embeddings=64, pad_token_id=tok.pad_token_id, bos_token_id=tok.cls_token_id,
                         eos_token_id=tok.sep_token_id)
    T.GitForCausalLM(config).save_pretrained(folder)
    image_processor = _pil("CLIPImageProcessor")(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    T.GitProcessor(image_processor=image_processor, tokenizer=tok).save_pretrained(folder)


def build_llama(folder: str) -> None:
    import transformers as T

    tok = _chat_tokenizer([])
    tok.chat_template = CHATML
    T.LlamaForCausalLM(T.LlamaConfig(**TINY_LM, **_lm_ids(tok))).save_pretrained(folder)
    tok.save_pretrained(folder)


def build_clip(folder: str) -> None:
    import transformers as T
    from tokenizers.processors import TemplateProcessing

    tok = word_tokenizer(["<pad>", "<unk>", "<s>", "</s>"], pad_token="<pad>", unk_token="<unk>",
                         bos_token="<s>", eos_token="</s>")
    # CLIP pools its text tower at the end token: every text must end with one
    tok.backend_tokenizer.post_processor = TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", tok.bos_token_id), ("</s>", tok.eos_token_id)])
    text = dict(TINY, vocab_size=len(tok), max_position_embeddings=40, pad_token_id=tok.pad_token_id,
                bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    T.CLIPModel(T.CLIPConfig(text_config=text, vision_config=dict(TINY, image_size=32, patch_size=8),
                             projection_dim=16)).save_pretrained(folder)
    _pil("CLIPImageProcessor")(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    tok.save_pretrained(folder)


BUILDERS = {"llava": build_llava, "idefics3": build_idefics3, "blip": build_blip, "git": build_git,
            "llama": build_llama, "clip": build_clip}


def build(name: str, folder: str, seed: int = 0) -> str:
    import torch

    torch.manual_seed(seed)
    BUILDERS[name](folder)
    return folder


def build_tiny_vlm(folder: str) -> str:
    """The benchmark's default model: a tiny LLaVA (CLIP vision tower + Llama)."""
    return build("llava", folder)
