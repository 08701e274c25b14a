# Copyright (c) gap_mm authors. All rights reserved.
"""Generate a procedural COCO-format object detection dataset.

The output follows the COCO 2017 layout, so mmdet's ``CocoDataset`` (with
``metainfo=dict(classes=...)``) and pycocotools read it as they read COCO::

    <out>/annotations/instances_train2017.json
    <out>/annotations/instances_val2017.json
    <out>/train2017/000000000001.jpg ...
    <out>/val2017/000000000001.jpg ...

Each image holds ``--min-objects`` to ``--max-objects`` filled shapes. The
class is the shape (circle, square, triangle, cross, ring, star); colour,
size, position and rotation vary independently of it. Later objects are
drawn over earlier ones. A placement is rejected (and retried) if it would
hide more than ``--max-occlusion`` (default 50%) of an earlier object, so no
object is ever occluded beyond that and every drawn object is annotated.

The background is clutter that is not an object: a linear colour gradient,
random thin lines, small irregular blobs (smaller than the smallest object)
and, over everything, Gaussian pixel noise.

Annotations, as in COCO, describe the *visible* extent of each object:
``bbox = [x, y, w, h]`` is the tight box around its visible pixels (in
pixel-edge coordinates, so a single pixel at column 3 has x=3, w=1),
``area`` is its visible pixel count, ``segmentation`` is its visible mask as
uncompressed RLE (pycocotools' column-major ``counts`` list) and
``iscrowd`` is 0. Category ids start at 1, in the order of ``--classes``.

The output depends only on the arguments: each image is drawn from a random
generator seeded by (seed, split, index), so the same ``--seed`` gives
identical files and ``--num-val`` does not change the train images.

Only numpy and Pillow are needed. Example::

    python tools/dataset_converters/gen_synthetic_coco.py \\
        --out data/synthetic_coco --num-train 300 --num-val 60 --seed 0
"""
import argparse
import json
import math
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

#: The default classes, in category-id order (the demo task's six).
SHAPES = ('circle', 'square', 'triangle', 'cross', 'ring', 'star')
#: Shapes drawn only when ``--classes`` names them (the crowded task's
#: extra classes; a pentagon and a hexagon differ only in fine detail).
EXTRA_SHAPES = ('pentagon', 'hexagon', 'semicircle', 'arrow')
#: Every shape this generator can draw.
ALL_SHAPES = SHAPES + EXTRA_SHAPES
#: Split name -> code mixed into the per-image seed.
SPLITS = {'train2017': 0, 'val2017': 1}

#: Object size range (diameter of the shape's circumscribed circle) at 256 px.
MIN_SIZE_AT_256 = 16
MAX_SIZE_AT_256 = 90
#: Minimum RGB distance (L1, 0-765) between an object and its background.
MIN_CONTRAST = 150

Point = Tuple[float, float]


def coco_metainfo(classes: Sequence[str] = SHAPES) -> dict:
    """Return the ``metainfo`` for mmdet's ``CocoDataset`` on this data.

    Args:
        classes (Sequence[str]): The generated classes, in category-id
            order. Defaults to :data:`SHAPES`.

    Returns:
        dict: ``dict(classes=tuple, palette=list of RGB tuples)``.
    """
    palette = [(220, 20, 60), (0, 130, 230), (0, 170, 60), (250, 170, 30),
               (150, 0, 200), (120, 120, 120), (0, 200, 200), (200, 100, 0),
               (255, 105, 180), (90, 60, 30)]
    return dict(
        classes=tuple(classes),
        palette=[
            palette[ALL_SHAPES.index(name) % len(palette)]
            for name in classes
        ])


def _rotate(points: np.ndarray, angle: float, center: Point) -> List[Point]:
    """Rotate ``points`` (N, 2) around the origin and move them to center."""
    cos, sin = math.cos(angle), math.sin(angle)
    rot = np.array([[cos, -sin], [sin, cos]])
    moved = points @ rot.T + np.asarray(center)
    return [tuple(p) for p in moved.tolist()]


def shape_polygon(shape: str, center: Point, size: float,
                  angle: float) -> List[Point]:
    """Outline of a polygonal shape (every shape but circle and ring).

    Args:
        shape (str): ``'square'``, ``'triangle'``, ``'cross'``, ``'star'``,
            ``'pentagon'``, ``'hexagon'``, ``'semicircle'`` or ``'arrow'``.
        center (tuple[float, float]): Centre ``(x, y)`` in pixels.
        size (float): Diameter of the shape's circumscribed circle.
        angle (float): Rotation in radians.

    Returns:
        list[tuple[float, float]]: The polygon's vertices in pixels.
    """
    r = size / 2
    if shape == 'square':
        # Not fully inscribed, so that a rotated square covers a similar box
        # as an upright one (its corners reach 1.13 r).
        s = r * 0.8
        pts = np.array([[-s, -s], [s, -s], [s, s], [-s, s]])
    elif shape == 'triangle':
        pts = np.array([[r * math.cos(a), r * math.sin(a)]
                        for a in np.deg2rad([-90, 30, 150])])
    elif shape == 'cross':
        t = r * 0.3
        pts = np.array([[-t, -r], [t, -r], [t, -t], [r, -t], [r, t], [t, t],
                        [t, r], [-t, r], [-t, t], [-r, t], [-r, -t], [-t, -t]])
    elif shape == 'star':
        radii = [r if k % 2 == 0 else r * 0.42 for k in range(10)]
        pts = np.array(
            [[rad * math.cos(a), rad * math.sin(a)]
             for rad, a in zip(radii, np.deg2rad(np.arange(10) * 36 - 90))])
    elif shape in ('pentagon', 'hexagon'):
        n = 5 if shape == 'pentagon' else 6
        pts = np.array([[r * math.cos(a), r * math.sin(a)]
                        for a in np.deg2rad(np.arange(n) * 360 / n - 90)])
    elif shape == 'semicircle':
        # A half disc centred in its box (half as tall as wide), its radius
        # chosen so that the box's corners lie on the circle of ``size``.
        rho = r / math.hypot(1, 0.5)
        a = np.deg2rad(np.linspace(180, 360, 25))
        pts = np.stack([rho * np.cos(a), rho * np.sin(a) + rho / 2], axis=1)
    elif shape == 'arrow':
        t, h = r * 0.22, r * 0.5
        pts = np.array([[-r, -t], [r - h, -t], [r - h, -2 * t], [r, 0],
                        [r - h, 2 * t], [r - h, t], [-r, t]])
    else:
        polygons = [s for s in ALL_SHAPES if s not in ('circle', 'ring')]
        raise ValueError(
            f'shape must be one of {polygons}, but got {shape!r}')
    return _rotate(pts, angle, center)


def draw_shape_mask(shape: str, center: Point, size: float, angle: float,
                    img_size: int) -> np.ndarray:
    """Rasterise a shape into a boolean mask.

    Args:
        shape (str): One of :data:`ALL_SHAPES`.
        center (tuple[float, float]): Centre ``(x, y)`` in pixels.
        size (float): Diameter of the shape (of its circumscribed circle for
            polygons) in pixels.
        angle (float): Rotation in radians (no effect on circle and ring).
        img_size (int): Side of the square image.

    Returns:
        np.ndarray: A (img_size, img_size) bool mask.
    """
    if shape not in ALL_SHAPES:
        raise ValueError(
            f'shape must be one of {ALL_SHAPES}, but got {shape!r}')
    canvas = Image.new('L', (img_size, img_size), 0)
    draw = ImageDraw.Draw(canvas)
    if shape in ('circle', 'ring'):
        x, y = center
        r = size / 2
        draw.ellipse([x - r, y - r, x + r, y + r], fill=1)
        if shape == 'ring':  # punch the hole; the background shows through
            r_in = r * 0.56
            draw.ellipse([x - r_in, y - r_in, x + r_in, y + r_in], fill=0)
    else:
        draw.polygon(shape_polygon(shape, center, size, angle), fill=1)
    return np.asarray(canvas, dtype=bool)


def draw_background(rng: np.random.Generator, img_size: int) -> np.ndarray:
    """Draw the clutter background: gradient, lines and small blobs.

    Args:
        rng (np.random.Generator): Random generator.
        img_size (int): Side of the square image.

    Returns:
        np.ndarray: A (img_size, img_size, 3) float32 image in [0, 255].
    """
    start, end = rng.uniform(0, 255, size=(2, 3))
    angle = rng.uniform(0, 2 * math.pi)
    coords = np.linspace(0, 1, img_size, dtype=np.float32)
    t = (coords[None, :] * math.cos(angle) + coords[:, None] * math.sin(angle))
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    img = start.astype(
        np.float32) + t[..., None] * (end - start).astype(np.float32)

    canvas = Image.fromarray(img.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for _ in range(rng.integers(2, 7)):  # thin lines across the image
        pts = rng.uniform(0, img_size, size=4).tolist()
        colour = tuple(rng.integers(0, 256, size=3).tolist())
        draw.line(pts, fill=colour, width=int(rng.integers(1, 3)))
    max_blob = max(2.0, img_size * 5 / 256)  # well below the smallest shape
    for _ in range(rng.integers(3, 12)):  # small irregular blobs
        cx, cy = rng.uniform(0, img_size, size=2)
        n = int(rng.integers(5, 9))
        angles = np.sort(rng.uniform(0, 2 * math.pi, size=n))
        radii = rng.uniform(0.4, 1.0, size=n) * max_blob
        pts = [(cx + rad * math.cos(a), cy + rad * math.sin(a))
               for rad, a in zip(radii, angles)]
        colour = tuple(rng.integers(0, 256, size=3).tolist())
        draw.polygon(pts, fill=colour)
    return np.asarray(canvas, dtype=np.float32)


def _pick_colour(rng: np.random.Generator,
                 background: np.ndarray) -> np.ndarray:
    """A random colour that stands out from the given background pixels."""
    mean = background.reshape(-1, 3).mean(axis=0)
    best, best_dist = None, -1.0
    for _ in range(20):
        colour = rng.uniform(0, 255, size=3)
        dist = float(np.abs(colour - mean).sum())
        if dist >= MIN_CONTRAST:
            return colour
        if dist > best_dist:
            best, best_dist = colour, dist
    return best


def mask_to_rle(mask: np.ndarray) -> dict:
    """Encode a mask as COCO uncompressed RLE (column-major run lengths).

    Args:
        mask (np.ndarray): A (H, W) bool mask.

    Returns:
        dict: ``dict(size=[H, W], counts=[...])``; the first count is the
        number of leading zeros (possibly 0).
    """
    flat = mask.T.reshape(-1).astype(np.int8)  # Fortran order, as COCO
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0] == 1:
        counts = [0] + counts
    return dict(size=list(mask.shape), counts=counts)


def generate_image(
    rng: np.random.Generator,
    img_size: int = 256,
    classes: Sequence[str] = SHAPES,
    num_objects: Tuple[int, int] = (2, 6),
    size_range: Optional[Tuple[float, float]] = None,
    max_occlusion: float = 0.5,
    noise_std: Tuple[float, float] = (2.0, 12.0)
) -> Tuple[np.ndarray, List[dict]]:
    """Draw one image and its objects.

    Args:
        rng (np.random.Generator): Random generator (the only randomness).
        img_size (int): Side of the square image. Defaults to 256.
        classes (Sequence[str]): Shapes to draw; an object's label is its
            index here. Defaults to :data:`SHAPES`.
        num_objects (tuple[int, int]): Inclusive range of the number of
            objects. Defaults to (2, 6).
        size_range (tuple[float, float], optional): Range of object sizes in
            pixels (circumscribed diameter), sampled log-uniformly.
            Defaults to 16-90 px scaled by ``img_size / 256``.
        max_occlusion (float): Largest fraction of an object that later
            objects may hide. Defaults to 0.5.
        noise_std (tuple[float, float]): Range of the standard deviation of
            the Gaussian pixel noise. Defaults to (2, 12).

    Returns:
        tuple[np.ndarray, list[dict]]: The (H, W, 3) uint8 RGB image and one
        dict per object with ``label`` (int), ``shape`` (str), ``mask``
        (visible (H, W) bool mask) and ``visible`` (visible fraction).
    """
    if size_range is None:
        size_range = (MIN_SIZE_AT_256 * img_size / 256,
                      MAX_SIZE_AT_256 * img_size / 256)
    img = draw_background(rng, img_size)
    objects: List[dict] = []
    for _ in range(int(rng.integers(num_objects[0], num_objects[1] + 1))):
        label = int(rng.integers(len(classes)))
        for _attempt in range(30):
            size = float(np.exp(rng.uniform(*np.log(np.asarray(size_range)))))
            half = size / 2
            center = tuple(rng.uniform(half, img_size - half, size=2))
            angle = float(rng.uniform(0, 2 * math.pi))
            mask = draw_shape_mask(classes[label], center, size, angle,
                                   img_size)
            if mask.sum() < 16:
                continue
            # Keep every earlier object at least (1 - max_occlusion) visible.
            if all((obj['mask'] & ~mask).sum() >= (1 - max_occlusion) *
                   obj['full_area'] for obj in objects):
                break
        else:
            continue  # no acceptable place: leave this object out
        for obj in objects:
            obj['mask'] &= ~mask
        colour = _pick_colour(rng, img[mask])
        # Slight shading across the object so it is not perfectly flat.
        shade = rng.uniform(-25, 25, size=3)
        ys, xs = np.nonzero(mask)
        t = (xs - xs.min()) / max(xs.max() - xs.min(), 1)
        img[ys, xs] = colour + t[:, None] * shade
        objects.append(
            dict(
                label=label,
                shape=classes[label],
                mask=mask.copy(),
                full_area=int(mask.sum())))
    img += rng.uniform(*noise_std) * rng.standard_normal(
        img.shape, dtype=np.float32)
    for obj in objects:
        obj['visible'] = float(obj['mask'].sum()) / obj.pop('full_area')
    return np.clip(img, 0, 255).round().astype(np.uint8), objects


def object_annotation(mask: np.ndarray, ann_id: int, image_id: int,
                      category_id: int) -> dict:
    """Build the COCO annotation of an object's visible mask.

    Args:
        mask (np.ndarray): Visible (H, W) bool mask (not empty).
        ann_id (int): Annotation id.
        image_id (int): Image id.
        category_id (int): Category id.

    Returns:
        dict: A COCO ``annotations`` entry.
    """
    ys, xs = np.nonzero(mask)
    x0, y0 = int(xs.min()), int(ys.min())
    w, h = int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1
    return dict(
        id=ann_id,
        image_id=image_id,
        category_id=category_id,
        bbox=[float(x0), float(y0), float(w),
              float(h)],
        area=float(mask.sum()),
        iscrowd=0,
        segmentation=mask_to_rle(mask))


def generate_split(out_dir: str,
                   split: str,
                   num_images: int,
                   seed: int = 0,
                   img_size: int = 256,
                   classes: Sequence[str] = SHAPES,
                   img_format: str = 'jpg',
                   **kwargs) -> dict:
    """Generate one split: its images and its COCO annotation file.

    Args:
        out_dir (str): Dataset root.
        split (str): ``'train2017'`` or ``'val2017'``.
        num_images (int): Number of images.
        seed (int): Random seed. Defaults to 0.
        img_size (int): Side of the square images. Defaults to 256.
        classes (Sequence[str]): Shapes to draw, in category-id order.
            Defaults to :data:`SHAPES`.
        img_format (str): ``'jpg'`` or ``'png'``. Defaults to ``'jpg'``.
        **kwargs: Passed to :func:`generate_image`.

    Returns:
        dict: The COCO annotation dict that was written.
    """
    if split not in SPLITS:
        raise ValueError(f'split must be one of {tuple(SPLITS)}, '
                         f'but got {split!r}')
    img_dir = osp.join(out_dir, split)
    ann_dir = osp.join(out_dir, 'annotations')
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(ann_dir, exist_ok=True)
    images, annotations = [], []
    for index in range(num_images):
        rng = np.random.default_rng([seed, SPLITS[split], index])
        img, objects = generate_image(
            rng, img_size=img_size, classes=classes, **kwargs)
        image_id = index + 1
        file_name = f'{image_id:012d}.{img_format}'
        save_args = dict(quality=95) if img_format == 'jpg' else dict()
        Image.fromarray(img).save(osp.join(img_dir, file_name), **save_args)
        images.append(
            dict(
                id=image_id,
                file_name=file_name,
                width=img_size,
                height=img_size))
        for obj in objects:
            annotations.append(
                object_annotation(obj['mask'],
                                  len(annotations) + 1, image_id,
                                  obj['label'] + 1))
    coco = dict(
        info=dict(
            description='gap_mm procedural shapes (gen_synthetic_coco.py)',
            version='1.0',
            year=2024,
            seed=seed),
        licenses=[],
        images=images,
        annotations=annotations,
        categories=[
            dict(id=i + 1, name=name, supercategory='shape')
            for i, name in enumerate(classes)
        ])
    with open(osp.join(ann_dir, f'instances_{split}.json'), 'w') as f:
        json.dump(coco, f, separators=(',', ':'))
    return coco


def generate_dataset(out_dir: str,
                     num_train: int = 200,
                     num_val: int = 50,
                     **kwargs) -> Dict[str, dict]:
    """Generate the train and val splits.

    Args:
        out_dir (str): Dataset root.
        num_train (int): Number of training images. Defaults to 200.
        num_val (int): Number of validation images. Defaults to 50.
        **kwargs: Passed to :func:`generate_split`.

    Returns:
        dict[str, dict]: Split name -> COCO annotation dict.
    """
    return {
        split: generate_split(out_dir, split, num, **kwargs)
        for split, num in (('train2017', num_train), ('val2017', num_val))
    }


def parse_args() -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        description='Generate a procedural COCO-format detection dataset')
    parser.add_argument(
        '--out', default='data/synthetic_coco', help='output directory')
    parser.add_argument('--num-train', type=int, default=200)
    parser.add_argument('--num-val', type=int, default=50)
    parser.add_argument('--img-size', type=int, default=256)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--classes',
        nargs='+',
        default=list(SHAPES),
        help=f'shapes to draw, in category-id order, from {ALL_SHAPES} '
        f'(space or comma separated; default: {SHAPES})')
    parser.add_argument('--min-objects', type=int, default=2)
    parser.add_argument('--max-objects', type=int, default=6)
    parser.add_argument(
        '--min-size',
        type=float,
        help=f'smallest object size in px (default {MIN_SIZE_AT_256} at 256 '
        'px, scaled with --img-size)')
    parser.add_argument(
        '--max-size',
        type=float,
        help=f'largest object size in px (default {MAX_SIZE_AT_256} at 256 '
        'px, scaled with --img-size)')
    parser.add_argument(
        '--max-occlusion',
        type=float,
        default=0.5,
        help='largest fraction of an object that later objects may hide')
    parser.add_argument('--format', choices=['jpg', 'png'], default='jpg')
    return parser.parse_args()


def main() -> None:
    """Generate the dataset described by the command line."""
    args = parse_args()
    classes = [c for arg in args.classes for c in arg.split(',') if c]
    unknown = sorted(set(classes) - set(ALL_SHAPES))
    if unknown or len(set(classes)) != len(classes) or not classes:
        raise SystemExit('--classes must be distinct names from '
                         f'{ALL_SHAPES}, '
                         f'but got {classes}')
    if not 1 <= args.min_objects <= args.max_objects:
        raise SystemExit('need 1 <= --min-objects <= --max-objects, but got '
                         f'{args.min_objects} and {args.max_objects}')
    scale = args.img_size / 256
    size_range = (args.min_size or MIN_SIZE_AT_256 * scale, args.max_size
                  or MAX_SIZE_AT_256 * scale)
    if not 0 < size_range[0] <= size_range[1] <= args.img_size:
        raise SystemExit(f'invalid object size range {size_range} for '
                         f'--img-size {args.img_size}')
    cocos = generate_dataset(
        args.out,
        num_train=args.num_train,
        num_val=args.num_val,
        seed=args.seed,
        img_size=args.img_size,
        classes=classes,
        img_format=args.format,
        num_objects=(args.min_objects, args.max_objects),
        size_range=size_range,
        max_occlusion=args.max_occlusion)
    for split, coco in cocos.items():
        print(f'{split}: {len(coco["images"])} images, '
              f'{len(coco["annotations"])} objects -> '
              f'{osp.join(args.out, "annotations")}'
              f'/instances_{split}.json')


if __name__ == '__main__':
    main()
