"""In-domain evaluator networks (a small CLIP-style image–text model and CNN classifiers), trained by this
project's own reproducible command and shipped as weights files::

    python -m bench.evaluators train NAME [--out FILE] [--epochs N] [--seed S]
    python -m bench.evaluators report

They are used frozen through the backbones of :mod:`bench.backbones.indomain` (``clip-indomain-fashion``,
``classifier-indomain-fashion``, ``classifier-indomain-digits``); their validation quality is published in
``leaderboards/evaluators.{csv,md}``.
"""
