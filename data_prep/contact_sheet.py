"""Contact sheets: a PNG grid of the faces held by shards, to look at what ``dfd prep`` made."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from dfd import schema
from dfd.labels import label_name

log = logging.getLogger(__name__)


def contact_sheet(source, out_png: str | Path, per_record: int = 8, max_records: int = 24,
                  thumb: int = 96) -> Path:
    """Write one row per record (video track): its id, label, track and ``per_record`` faces."""
    import tensorflow as tf

    rows = []
    for f in schema.resolve_shards(source):
        for raw in tf.data.TFRecordDataset(str(f)).as_numpy_iterator():
            rows.append(schema.decode_record(raw))
            if len(rows) >= max_records:
                break
        if len(rows) >= max_records:
            break
    if not rows:
        raise ValueError(f"no records in {source}")
    label_w = 260
    sheet = np.full((len(rows) * thumb, label_w + per_record * thumb, 3), 255, np.uint8)
    for r, rec in enumerate(rows):
        faces = rec[schema.FACE]
        pick = np.linspace(0, len(faces) - 1, min(per_record, len(faces))).round().astype(int)
        for c, i in enumerate(pick):
            img = cv2.resize(schema.decode_image(faces[i]), (thumb, thumb),
                             interpolation=cv2.INTER_AREA)
            sheet[r * thumb:(r + 1) * thumb, label_w + c * thumb:label_w + (c + 1) * thumb] = img
        text = [rec[schema.VIDEO_ID][:28], f"{label_name(rec[schema.LABEL])} track {rec[schema.TRACK]}",
                f"{len(faces)} faces"]
        for k, line in enumerate(text):
            cv2.putText(sheet, line, (4, r * thumb + 22 + 24 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                        (0, 0, 0), 1, cv2.LINE_AA)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out_png), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    log.info("contact sheet of %d records -> %s", len(rows), out_png)
    return out_png
