"""The Apache Beam runner (``runner.py``) and its adapters: stages as DoFns (``transforms.py``),
model stages through RunInference (``model_handler.py``). Imported only when a build runs on Beam."""
