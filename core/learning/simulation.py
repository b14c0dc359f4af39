"""Simulated departments: plausible form answers, for the demo and for drills."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from process_defs.schema import FieldType, FormField, Step


def sample_value(field: FormField, rng: random.Random) -> Any:
    kind = field.type
    if kind is FieldType.number:
        return rng.randint(0, 40)
    if kind is FieldType.boolean:
        return rng.random() < 0.5
    if kind is FieldType.choice:
        values = [c.value for c in field.choices or []]
        return [rng.choice(values)] if field.multiple else rng.choice(values)
    if kind is FieldType.datetime:
        return (datetime.now(UTC) + timedelta(hours=rng.randint(1, 24))).replace(microsecond=0).isoformat()
    if kind is FieldType.location:
        return {"name": "演示地点 Demo site", "lat": round(31.2 + rng.random() / 10, 5),
                "lon": round(121.4 + rng.random() / 10, 5)}
    if kind is FieldType.attachment:
        return [f"att-{rng.randint(1000, 9999)}"] if field.multiple else f"att-{rng.randint(1000, 9999)}"
    return f"{field.label.zh}：已按预案处置（模拟） / {field.label.en}: handled per plan (simulated)"


def sample_outputs(step: Step, rng: random.Random | None = None) -> dict[str, Any]:
    generator = rng or random.Random()
    return {f.key: sample_value(f, generator) for f in step.form if f.required or generator.random() < 0.5}
