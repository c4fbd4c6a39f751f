"""An overlay image: the capture as taken, with each defect's box (mapped from the master's
frame into the capture's) drawn over it, as a JPEG no larger than `MAX_SIDE` pixels."""

import cv2
import numpy as np

from loupe_inspect.pipeline.images import Gray
from loupe_inspect.pipeline.run import Outcome

MAX_SIDE = 2048
JPEG_QUALITY = 85
_RED = (40, 40, 230)
_AMBER = (0, 170, 255)


def render(capture: Gray, outcome: Outcome) -> bytes:
    scale = min(1.0, MAX_SIDE / max(capture.shape[:2]))
    image = capture
    if scale < 1.0:
        size = (round(capture.shape[1] * scale), round(capture.shape[0] * scale))
        image = np.asarray(cv2.resize(capture, size, interpolation=cv2.INTER_AREA), np.uint8)
    canvas = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    matrix = outcome.pose.matrix.astype(np.float64)
    thickness = max(2, round(max(canvas.shape[:2]) / 500))
    for defect in outcome.defects:
        x, y, w, h = defect.x, defect.y, defect.width, defect.height
        corners = np.array([[x, y, 1], [x + w, y, 1], [x, y + h, 1], [x + w, y + h, 1]], float)
        mapped = corners @ matrix.T * scale
        x0, y0 = np.floor(mapped.min(axis=0)).astype(int) - thickness
        x1, y1 = np.ceil(mapped.max(axis=0)).astype(int) + thickness
        colour = _AMBER if defect.kind == "brightness" else _RED
        cv2.rectangle(canvas, (int(x0), int(y0)), (int(x1), int(y1)), colour, thickness)
        label = f"{defect.tool_id}: {defect.kind}"
        cv2.putText(
            canvas,
            label,
            (int(x0), max(12, int(y0) - 4)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.4 * thickness,
            colour,
            max(1, thickness // 2),
            cv2.LINE_AA,
        )
    ok, data = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError("the overlay could not be encoded")
    return bytes(data)
