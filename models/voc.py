"""Read PASCAL VOC annotations (the layout of mask_scenes: images/ + annotations/)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# VOC class name -> our label index (models.faces.LABELS order).
VOC_CLASSES = {"with_mask": 0, "without_mask": 1, "mask_weared_incorrect": 2}


@dataclass
class Scene:
    """One annotated image: boxes (N, 4) float32 x1, y1, x2, y2 pixels; labels (N,) int (VOC_CLASSES)."""

    image_path: Path
    boxes: np.ndarray
    labels: np.ndarray

    @property
    def stem(self) -> str:
        """Image file name without its extension."""
        return self.image_path.stem


def read_annotation(xml_path: Path, images_dir: Path) -> Scene:
    """Parse one VOC XML; the image is looked up in images_dir by stem (the XML's filename may lie)."""
    root = ET.parse(xml_path).getroot()
    boxes, labels = [], []
    for obj in root.iter("object"):
        name = obj.findtext("name")
        if name not in VOC_CLASSES:
            continue
        bb = obj.find("bndbox")
        boxes.append([float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")])
        labels.append(VOC_CLASSES[name])
    matches = sorted(images_dir.glob(xml_path.stem + ".*"))
    if not matches:
        raise FileNotFoundError(f"no image for {xml_path.name} in {images_dir}")
    return Scene(
        image_path=matches[0],
        boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
        labels=np.asarray(labels, np.int64),
    )


def read_scenes(folder: Path) -> list[Scene]:
    """Every annotated image of a folder holding images/ and annotations/, sorted by name."""
    folder = Path(folder)
    images, annotations = folder / "images", folder / "annotations"
    if not images.is_dir() or not annotations.is_dir():
        raise FileNotFoundError(f"{folder} must hold images/ and annotations/ (PASCAL VOC layout)")
    return [read_annotation(x, images) for x in sorted(annotations.glob("*.xml"))]
