"""A separate teacher for the training stages (`teacher: {model, revision}`), loaded as the
model is and checked to speak the same vocabulary; the default teacher is the model before
pruning."""

from __future__ import annotations

from worker.engine.errors import SpecError
from worker.engine.model.model_io import load_model, locate_model


def load_teacher(spec, where, student):
    """The teacher model of `spec.teacher`, on CPU in eval mode, in the student's dtype."""
    t = spec.teacher
    path = locate_model(
        t.model,
        t.revision,
        models_dir=where.models_dir,
        cache_dir=where.cache_dir,
        allow_local=where.allow_local,
    )
    model, _ = load_model(path, spec.dtype)
    mine = student.get_output_embeddings().weight.shape[0]
    theirs = model.get_output_embeddings().weight.shape[0]
    if mine != theirs:
        raise SpecError(
            f"teacher.model: {t.model!r} has {theirs} output logits, the model {mine}; "
            "distillation compares logits token by token, so the teacher needs the model's "
            "vocabulary"
        )
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()
