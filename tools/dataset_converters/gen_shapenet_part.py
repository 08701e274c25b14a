# Copyright (c) gap_mm authors. All rights reserved.
"""Generate a procedural ShapeNet-part-style dataset.

The output follows ``shapenetcore_partanno_segmentation_benchmark_v0_normal``
exactly, so :class:`gap_mm3d.datasets.ShapeNetPartDataset` reads it as it
reads the real benchmark::

    <out>/synsetoffset2category.txt
    <out>/<synset>/<shape_id>.txt      # 'x y z nx ny nz part_label' rows
    <out>/train_test_split/shuffled_{train,val,test}_file_list.json

Every shape is a composite of primitives (boxes, cylinders, cones, disks,
torus arcs) with random proportions. Points are sampled uniformly by area on
the primitives' surfaces, with exact outward normals, and labelled with the
benchmark's global part ids of the real ShapeNet category (y is up, as in
ShapeNet). Parts that are optional in real objects (table supports, chair
arms, lamp canopies, airplane engines) are sometimes left out, so the
"absent part" case of the metric occurs.

Only numpy is needed. The output depends only on the arguments: the same
``--seed`` gives byte-identical files, and each shape depends on
(seed, category, index) only, so ``--categories`` does not change the other
categories' shapes.

Example::

    python tools/dataset_converters/gen_shapenet_part.py \\
        --out data/shapenetcore_partanno_segmentation_benchmark_v0_normal \\
        --shapes-per-category 40 --points 2048 --seed 0

``--category-shapes Mug=10 Table=25`` gives some categories other counts, so
that the categories' shares differ (then the class-averaged mIoU differs from
the instance-averaged one).
"""
import argparse
import hashlib
import json
import os
import os.path as osp
import shutil
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

DEFAULT_OUT = 'data/shapenetcore_partanno_segmentation_benchmark_v0_normal'

#: Synsets and global part ids of the generated categories (the benchmark's).
SYNSETS = {
    'Airplane': '02691156',
    'Chair': '03001627',
    'Lamp': '03636649',
    'Mug': '03797390',
    'Table': '04379243',
}
PARTS = {
    'Airplane': dict(body=0, wing=1, tail=2, engine=3),
    'Chair': dict(back=12, seat=13, leg=14, arm=15),
    'Lamp': dict(base=24, lampshade=25, canopy=26, tube=27),
    'Mug': dict(handle=36, cup=37),
    'Table': dict(desktop=47, leg=48, support=49),
}
#: Order of the categories in the category file (the benchmark's order).
CATEGORIES = ('Airplane', 'Chair', 'Lamp', 'Mug', 'Table')

Array = np.ndarray


# --------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------
def rot_x(angle: float) -> Array:
    """Rotation matrix about the x axis."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]], dtype=np.float64)


def rot_y(angle: float) -> Array:
    """Rotation matrix about the y axis."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=np.float64)


def rot_z(angle: float) -> Array:
    """Rotation matrix about the z axis."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=np.float64)


#: Frames that map the local y axis onto x, y or z.
Y_TO_X = rot_z(-np.pi / 2)
Y_TO_Y = np.eye(3)
Y_TO_Z = rot_x(np.pi / 2)


# --------------------------------------------------------------------------
# Primitives: each samples its surface uniformly by area with unit normals
# in a local frame; ``rotation`` and ``center`` place it (rotations keep
# normals, so they are rotated like the points).
# --------------------------------------------------------------------------
class Surface:
    """Base class of the primitives.

    Args:
        center (Sequence[float]): Translation of the local origin.
        rotation (np.ndarray, optional): 3x3 rotation of the local frame.
            Defaults to None (identity).
    """

    def __init__(self,
                 center: Sequence[float] = (0, 0, 0),
                 rotation: Optional[Array] = None) -> None:
        self.center = np.asarray(center, dtype=np.float64)
        self.rotation = np.eye(3) if rotation is None else rotation

    @property
    def area(self) -> float:
        """float: Surface area."""
        raise NotImplementedError

    def sample_local(self, num: int,
                     rng: np.random.Generator) -> Tuple[Array, Array]:
        """Sample ``num`` points and normals in the local frame."""
        raise NotImplementedError

    def sample(self, num: int,
               rng: np.random.Generator) -> Tuple[Array, Array]:
        """Sample ``num`` points and unit normals in the shape's frame.

        Args:
            num (int): Number of points.
            rng (np.random.Generator): Random generator.

        Returns:
            tuple[np.ndarray, np.ndarray]: (num, 3) points and normals.
        """
        points, normals = self.sample_local(num, rng)
        points = points @ self.rotation.T + self.center
        normals = normals @ self.rotation.T
        return points, normals


class Box(Surface):
    """The six faces of a box of ``size`` centred at the local origin.

    Args:
        size (Sequence[float]): Edge lengths along local x, y, z.
        **kwargs: ``center`` and ``rotation`` of :class:`Surface`.
    """

    def __init__(self, size: Sequence[float], **kwargs) -> None:
        super().__init__(**kwargs)
        self.size = np.asarray(size, dtype=np.float64)
        sx, sy, sz = self.size
        # faces: (axis, sign); area of the two faces normal to each axis
        self.face_area = np.repeat([sy * sz, sx * sz, sx * sy], 2)

    @property
    def area(self) -> float:
        return float(self.face_area.sum())

    def sample_local(self, num, rng):
        face = rng.choice(6, size=num, p=self.face_area / self.area)
        axis, sign = face // 2, np.where(face % 2 == 0, 1.0, -1.0)
        half = self.size / 2
        points = rng.uniform(-1.0, 1.0, size=(num, 3)) * half
        rows = np.arange(num)
        points[rows, axis] = sign * half[axis]
        normals = np.zeros((num, 3))
        normals[rows, axis] = sign
        return points, normals


class Frustum(Surface):
    """Lateral surface of a cone frustum around the local y axis.

    The radius goes linearly from ``r0`` at ``y0`` to ``r1`` at ``y1``; equal
    radii give a cylinder, a zero radius a cone.

    Args:
        r0 (float): Radius at ``y0``.
        r1 (float): Radius at ``y1``.
        y0 (float): Start height.
        y1 (float): End height, > y0.
        inward (bool): Normals point towards the axis (the inside wall of
            a container). Defaults to False.
        **kwargs: ``center`` and ``rotation`` of :class:`Surface`.
    """

    def __init__(self,
                 r0: float,
                 r1: float,
                 y0: float,
                 y1: float,
                 inward: bool = False,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        assert y1 > y0 and r0 >= 0 and r1 >= 0 and r0 + r1 > 0
        self.r0, self.r1, self.y0, self.y1 = r0, r1, y0, y1
        self.inward = inward

    @property
    def area(self) -> float:
        height = self.y1 - self.y0
        slant = np.hypot(height, self.r1 - self.r0)
        return float(np.pi * (self.r0 + self.r1) * slant)

    def sample_local(self, num, rng):
        r0, r1, height = self.r0, self.r1, self.y1 - self.y0
        dr = r1 - r0
        u = rng.uniform(size=num)
        # the area density along t in [0, 1] is proportional to r(t);
        # invert its CDF (r0 t + dr t^2 / 2) / ((r0 + r1) / 2) = u
        if abs(dr) < 1e-12:
            t = u
        else:
            t = (-r0 + np.sqrt(r0**2 + dr * (r0 + r1) * u)) / dr
        theta = rng.uniform(0, 2 * np.pi, size=num)
        radius = r0 + dr * t
        cos, sin = np.cos(theta), np.sin(theta)
        points = np.stack([radius * cos, self.y0 + height * t, radius * sin],
                          axis=1)
        normals = np.stack(
            [height * cos, np.full(num, -dr), height * sin], axis=1)
        normals /= np.linalg.norm(normals, axis=1, keepdims=True)
        if self.inward:
            normals = -normals
        return points, normals


class Disk(Surface):
    """A disk of ``radius`` in the local plane y = ``y``.

    Args:
        radius (float): Radius.
        y (float): Height of the disk.
        up (bool): Whether the normal is +y (else -y). Defaults to True.
        **kwargs: ``center`` and ``rotation`` of :class:`Surface`.
    """

    def __init__(self,
                 radius: float,
                 y: float,
                 up: bool = True,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.radius, self.y, self.up = radius, y, up

    @property
    def area(self) -> float:
        return float(np.pi * self.radius**2)

    def sample_local(self, num, rng):
        radius = self.radius * np.sqrt(rng.uniform(size=num))
        theta = rng.uniform(0, 2 * np.pi, size=num)
        points = np.stack([
            radius * np.cos(theta),
            np.full(num, self.y), radius * np.sin(theta)
        ],
                          axis=1)
        normals = np.zeros((num, 3))
        normals[:, 1] = 1.0 if self.up else -1.0
        return points, normals


class TorusArc(Surface):
    """Part of a torus around the local z axis (a ring in the xy plane).

    Points are ``((R + r cos psi) cos phi, (R + r cos psi) sin phi,
    r sin psi)`` for ``phi`` in ``[phi0, phi1]``.

    Args:
        major (float): Radius R of the centre circle.
        minor (float): Tube radius r < R.
        phi0 (float): Start angle.
        phi1 (float): End angle.
        **kwargs: ``center`` and ``rotation`` of :class:`Surface`.
    """

    def __init__(self, major: float, minor: float, phi0: float, phi1: float,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        assert 0 < minor < major and phi1 > phi0
        self.major, self.minor, self.phi0, self.phi1 = major, minor, phi0, phi1

    @property
    def area(self) -> float:
        return float(2 * np.pi * self.minor * self.major *
                     (self.phi1 - self.phi0))

    def sample_local(self, num, rng):
        big, small = self.major, self.minor
        psi = np.empty(0)
        # the area density in psi is proportional to R + r cos(psi)
        while psi.size < num:
            cand = rng.uniform(0, 2 * np.pi, size=2 * num)
            keep = rng.uniform(size=2 * num) * (big + small) <= \
                big + small * np.cos(cand)
            psi = np.concatenate([psi, cand[keep]])
        psi = psi[:num]
        phi = rng.uniform(self.phi0, self.phi1, size=num)
        normals = np.stack([
            np.cos(psi) * np.cos(phi),
            np.cos(psi) * np.sin(phi),
            np.sin(psi)
        ],
                           axis=1)
        ring = np.stack([big * np.cos(phi), big * np.sin(phi),
                         np.zeros(num)],
                        axis=1)
        return ring + small * normals, normals


def cylinder(radius: float,
             y0: float,
             y1: float,
             caps: Tuple[bool, bool] = (True, True),
             **kwargs) -> List[Surface]:
    """Lateral surface plus optional bottom/top caps around local y."""
    surfaces: List[Surface] = [Frustum(radius, radius, y0, y1, **kwargs)]
    if caps[0]:
        surfaces.append(Disk(radius, y0, up=False, **kwargs))
    if caps[1]:
        surfaces.append(Disk(radius, y1, up=True, **kwargs))
    return surfaces


# --------------------------------------------------------------------------
# Categories: each builder returns [(surface, part_id), ...]
# --------------------------------------------------------------------------
Parts = List[Tuple[Surface, int]]


def _label(surfaces: Sequence[Surface], part: int) -> Parts:
    return [(s, part) for s in surfaces]


def build_table(rng: np.random.Generator) -> Parts:
    """Desktop (box or round), legs (four or a pedestal), maybe supports."""
    p = PARTS['Table']
    height = rng.uniform(0.6, 0.9)
    thick = rng.uniform(0.03, 0.08)
    leg_h = height - thick
    parts: Parts = []
    if rng.uniform() < 0.7:
        width, depth = rng.uniform(1.0, 2.0), rng.uniform(0.6, 1.2)
        parts += _label(
            [Box((width, thick, depth), center=(0, height - thick / 2, 0))],
            p['desktop'])
        leg = rng.uniform(0.04, 0.1)
        inset = rng.uniform(0.0, 0.1)
        xs = (width / 2 - inset - leg / 2) * np.array([-1, 1])
        zs = (depth / 2 - inset - leg / 2) * np.array([-1, 1])
        for x in xs:
            for z in zs:
                parts += _label(
                    [Box((leg, leg_h, leg), center=(x, leg_h / 2, z))],
                    p['leg'])
        if rng.uniform() < 0.5:
            y = rng.uniform(0.15, 0.35) * leg_h
            bar = leg * 0.6
            for z in zs:
                parts += _label(
                    [Box((xs[1] - xs[0] - leg, bar, bar), center=(0, y, z))],
                    p['support'])
            if rng.uniform() < 0.5:
                parts += _label(
                    [Box((bar, bar, zs[1] - zs[0] - leg), center=(0, y, 0))],
                    p['support'])
    else:
        radius = rng.uniform(0.4, 0.7)
        parts += _label(cylinder(radius, height - thick, height), p['desktop'])
        pole = rng.uniform(0.04, 0.08)
        foot = rng.uniform(0.2, 0.35)
        foot_h = rng.uniform(0.02, 0.05)
        parts += _label(
            cylinder(pole, foot_h, leg_h, caps=(False, False)), p['leg'])
        parts += _label(cylinder(foot, 0.0, foot_h), p['leg'])
    return parts


def build_chair(rng: np.random.Generator) -> Parts:
    """Seat, four legs, a (tilted) back and sometimes two arms."""
    p = PARTS['Chair']
    width, depth = rng.uniform(0.45, 0.65), rng.uniform(0.45, 0.6)
    seat_h, seat_t = rng.uniform(0.4, 0.5), rng.uniform(0.04, 0.08)
    leg = rng.uniform(0.03, 0.06)
    leg_h = seat_h - seat_t
    parts: Parts = _label(
        [Box((width, seat_t, depth), center=(0, seat_h - seat_t / 2, 0))],
        p['seat'])
    for x in (width / 2 - leg / 2) * np.array([-1, 1]):
        for z in (depth / 2 - leg / 2) * np.array([-1, 1]):
            parts += _label([Box((leg, leg_h, leg), center=(x, leg_h / 2, z))],
                            p['leg'])
    back_h, back_t = rng.uniform(0.4, 0.7), rng.uniform(0.03, 0.06)
    tilt = rng.uniform(0.0, 0.25)
    # tilt backwards (towards -z) about the seat's rear edge
    rotation = rot_x(-tilt)
    offset = rotation @ np.array([0, back_h / 2, back_t / 2])
    parts += _label([
        Box((width, back_h, back_t),
            center=np.array([0, seat_h, -depth / 2]) + offset,
            rotation=rotation)
    ], p['back'])
    if rng.uniform() < 0.5:
        arm_y = seat_h + rng.uniform(0.15, 0.25)
        arm_w = rng.uniform(0.04, 0.07)
        arm_len = depth * rng.uniform(0.6, 0.9)
        for x in (width / 2 - arm_w / 2) * np.array([-1, 1]):
            zc = -depth / 2 + arm_len / 2
            parts += _label([
                Box((arm_w, 0.04, arm_len), center=(x, arm_y, zc)),
                Box((0.03, arm_y - seat_h, 0.03),
                    center=(x, (arm_y + seat_h) / 2, zc + arm_len / 2 - 0.03))
            ], p['arm'])
    return parts


def build_mug(rng: np.random.Generator) -> Parts:
    """Open cup (outer and inner wall, bottom) with a torus-arc handle."""
    p = PARTS['Mug']
    radius, height = rng.uniform(0.3, 0.45), rng.uniform(0.6, 1.0)
    wall = rng.uniform(0.02, 0.05)
    parts: Parts = _label(
        cylinder(radius, 0.0, height, caps=(True, False)) + [
            Frustum(radius - wall, radius - wall, wall, height, inward=True),
            Disk(radius - wall, wall, up=True)
        ], p['cup'])
    major = rng.uniform(0.18, 0.3) * height
    minor = rng.uniform(0.025, 0.05)
    parts += _label([
        TorusArc(
            major,
            minor,
            -np.pi / 2,
            np.pi / 2,
            center=(radius, rng.uniform(0.4, 0.6) * height, 0))
    ], p['handle'])
    return parts


def build_lamp(rng: np.random.Generator) -> Parts:
    """Base, tube, a cone shade and sometimes a canopy at the tube's top."""
    p = PARTS['Lamp']
    base_h = rng.uniform(0.03, 0.08)
    if rng.uniform() < 0.7:
        parts: Parts = _label(
            cylinder(rng.uniform(0.15, 0.3), 0.0, base_h), p['base'])
    else:
        side = rng.uniform(0.25, 0.5)
        parts = _label([Box((side, base_h, side), center=(0, base_h / 2, 0))],
                       p['base'])
    top = rng.uniform(0.6, 1.2)
    parts += _label(
        cylinder(rng.uniform(0.015, 0.03), base_h, top, caps=(False, False)),
        p['tube'])
    shade_h = rng.uniform(0.2, 0.4)
    shade_y0 = top - shade_h * rng.uniform(0.4, 0.7)
    parts += _label([
        Frustum(
            rng.uniform(0.2, 0.35), rng.uniform(0.08, 0.2), shade_y0,
            shade_y0 + shade_h)
    ], p['lampshade'])
    if rng.uniform() < 0.6:
        parts += _label(
            cylinder(
                rng.uniform(0.04, 0.06), top, top + rng.uniform(0.03, 0.06)),
            p['canopy'])
    return parts


def build_airplane(rng: np.random.Generator) -> Parts:
    """Fuselage with nose and tail cones, swept wings, tail, 0/2/4 engines."""
    p = PARTS['Airplane']
    length, radius = rng.uniform(1.0, 1.4), rng.uniform(0.05, 0.09)
    nose, tail_len = rng.uniform(0.1, 0.2), rng.uniform(0.15, 0.25)
    # fuselage along x: local y of the frustums maps onto x
    parts: Parts = _label([
        Frustum(radius, radius, -length / 2, length / 2, rotation=Y_TO_X),
        Frustum(radius, 0.0, length / 2, length / 2 + nose, rotation=Y_TO_X),
        Frustum(
            radius * 0.3,
            radius,
            -length / 2 - tail_len,
            -length / 2,
            rotation=Y_TO_X),
        Disk(radius * 0.3, -length / 2 - tail_len, up=False, rotation=Y_TO_X)
    ], p['body'])
    span, chord = rng.uniform(0.45, 0.7), rng.uniform(0.15, 0.3)
    thick = rng.uniform(0.015, 0.03)
    sweep = rng.uniform(0.0, 0.45)
    wing_x, wing_y = rng.uniform(-0.1, 0.15), -radius * 0.4
    for side in (-1, 1):
        # sweep the wing tips backwards (towards -x, away from the nose)
        rotation = rot_y(-side * sweep)
        offset = rotation @ np.array([0, 0, side * (radius + span / 2)])
        parts += _label([
            Box((chord, thick, span),
                center=np.array([wing_x, wing_y, 0]) + offset,
                rotation=rotation)
        ], p['wing'])
    fin_h, fin_c = rng.uniform(0.15, 0.25), rng.uniform(0.1, 0.2)
    tail_x = -length / 2 - tail_len + fin_c / 2
    parts += _label([
        Box((fin_c, fin_h, thick),
            center=(tail_x, radius * 0.3 + fin_h / 2, 0)),
        Box((fin_c * 0.8, thick, rng.uniform(0.3, 0.5)),
            center=(tail_x, radius * 0.3, 0))
    ], p['tail'])
    engines = int(rng.choice([0, 2, 4], p=[0.2, 0.5, 0.3]))
    eng_r, eng_l = rng.uniform(0.03, 0.05), rng.uniform(0.15, 0.25)
    fractions = {0: [], 2: [0.4], 4: [0.3, 0.65]}[engines]
    for side in (-1, 1):
        for frac in fractions:
            z = side * (radius + frac * span)
            x = wing_x - abs(z) * np.tan(sweep)
            center = (x, wing_y - thick / 2 - eng_r, z)
            parts += _label(
                cylinder(
                    eng_r,
                    -eng_l / 2,
                    eng_l / 2,
                    center=center,
                    rotation=Y_TO_X), p['engine'])
    return parts


BUILDERS: Dict[str, Callable[[np.random.Generator], Parts]] = {
    'Airplane': build_airplane,
    'Chair': build_chair,
    'Lamp': build_lamp,
    'Mug': build_mug,
    'Table': build_table,
}


# --------------------------------------------------------------------------
# Sampling and writing
# --------------------------------------------------------------------------
def allocate(areas: Sequence[float], num: int) -> Array:
    """Split ``num`` points over surfaces proportionally to their areas.

    Largest-remainder rounding; every surface gets at least one point when
    ``num`` allows it.
    """
    areas = np.asarray(areas, dtype=np.float64)
    share = num * areas / areas.sum()
    counts = np.floor(share).astype(np.int64)
    order = np.argsort(-(share - counts), kind='stable')
    counts[order[:num - counts.sum()]] += 1
    if num >= len(counts):
        for i in np.flatnonzero(counts == 0):
            counts[int(np.argmax(counts))] -= 1
            counts[i] = 1
    return counts


def sample_shape(parts: Parts, num_points: int,
                 rng: np.random.Generator) -> Array:
    """Sample a shape's surface.

    The shape is centred on its bounding box and scaled so that its longest
    side is 1 (coordinates in [-0.5, 0.5]); rows are shuffled.

    Args:
        parts (list[tuple[Surface, int]]): Surfaces and their part ids.
        num_points (int): Number of points.
        rng (np.random.Generator): Random generator.

    Returns:
        np.ndarray: (num_points, 7) rows ``x y z nx ny nz part_label``.
    """
    counts = allocate([s.area for s, _ in parts], num_points)
    chunks = []
    for (surface, part), count in zip(parts, counts):
        if count == 0:
            continue
        points, normals = surface.sample(int(count), rng)
        chunks.append(
            np.concatenate(
                [points, normals, np.full((count, 1), part)], axis=1))
    rows = np.concatenate(chunks)
    low, high = rows[:, :3].min(axis=0), rows[:, :3].max(axis=0)
    rows[:, :3] = (rows[:, :3] - (low + high) / 2) / (high - low).max()
    return rows[rng.permutation(len(rows))]


def shape_id(seed: int, category: str, index: int) -> str:
    """A ShapeNet-like 32-hex-digit id for (seed, category, index)."""
    key = f'gap_mm-shapenet-part:{seed}:{category}:{index}'
    return hashlib.sha1(key.encode('utf-8')).hexdigest()[:32]


def split_indices(num: int, rng: np.random.Generator) -> Dict[str, List[int]]:
    """Shuffle ``range(num)`` into about 70% train, 10% val, 20% test."""
    order = rng.permutation(num).tolist()
    num_val = max(1, round(0.1 * num)) if num >= 3 else 0
    num_test = max(1, round(0.2 * num)) if num >= 2 else 0
    return dict(
        val=order[:num_val],
        test=order[num_val:num_val + num_test],
        train=order[num_val + num_test:])


def generate(
        out: str,
        shapes_per_category: int = 40,
        num_points: int = 2048,
        seed: int = 0,
        categories: Optional[Sequence[str]] = None,
        overwrite: bool = False,
        category_shapes: Optional[Dict[str, int]] = None) -> Dict[str, int]:
    """Write the dataset.

    Args:
        out (str): Output folder (the ``..._v0_normal`` root).
        shapes_per_category (int): Shapes per category. Defaults to 40.
        num_points (int): Points per shape. Defaults to 2048.
        seed (int): Random seed. Defaults to 0.
        categories (Sequence[str], optional): Categories to generate, from
            :data:`CATEGORIES`. Defaults to None (all).
        overwrite (bool): Allow a non-empty ``out``; the generated files and
            category folders are replaced. Defaults to False.
        category_shapes (dict[str, int], optional): Number of shapes of the
            named categories, instead of ``shapes_per_category``; each must
            be one of ``categories``. Shape ``i`` of a category is the same
            whatever the counts. Defaults to None.

    Returns:
        dict[str, int]: Number of shapes in each split.
    """
    if categories is None:
        categories = CATEGORIES
    unknown = [c for c in categories if c not in BUILDERS]
    if unknown:
        raise ValueError(f'cannot generate categories {unknown}; choose from '
                         f'{list(CATEGORIES)}')
    if shapes_per_category < 1 or num_points < 1:
        raise ValueError('shapes_per_category and num_points must be >= 1, '
                         f'but got {shapes_per_category} and {num_points}')
    category_shapes = dict(category_shapes or {})
    not_generated = [c for c in category_shapes if c not in categories]
    if not_generated:
        raise ValueError(f'category_shapes names {not_generated}, which are '
                         f'not generated; the categories are '
                         f'{list(categories)}')
    bad = {
        c: n
        for c, n in category_shapes.items() if not isinstance(n, int) or n < 1
    }
    if bad:
        raise ValueError(f'category_shapes must be integers >= 1, but got '
                         f'{bad}')
    categories = [c for c in CATEGORIES if c in set(categories)]
    if osp.isdir(out) and os.listdir(out) and not overwrite:
        raise FileExistsError(f'{out} is not empty; pass --overwrite to '
                              'replace the generated files in it')
    os.makedirs(osp.join(out, 'train_test_split'), exist_ok=True)
    with open(osp.join(out, 'synsetoffset2category.txt'), 'w') as f:
        for category in categories:
            f.write(f'{category}\t{SYNSETS[category]}\n')

    splits: Dict[str, List[str]] = dict(train=[], val=[], test=[])
    for category in categories:
        synset = SYNSETS[category]
        folder = osp.join(out, synset)
        if osp.isdir(folder):
            shutil.rmtree(folder)
        os.makedirs(folder)
        num_shapes = category_shapes.get(category, shapes_per_category)
        ids = []
        for index in range(num_shapes):
            rng = np.random.default_rng([seed, int(synset), index])
            rows = sample_shape(BUILDERS[category](rng), num_points, rng)
            ids.append(shape_id(seed, category, index))
            np.savetxt(
                osp.join(folder, f'{ids[-1]}.txt'),
                rows,
                fmt='%.6f %.6f %.6f %.6f %.6f %.6f %d')
        split_rng = np.random.default_rng([seed, int(synset), 1 << 20])
        for split, indices in split_indices(num_shapes, split_rng).items():
            splits[split] += [f'shape_data/{synset}/{ids[i]}' for i in indices]

    counts = {}
    for split_index, (split, entries) in enumerate(splits.items()):
        rng = np.random.default_rng([seed, 1 << 21, split_index])
        entries = [entries[i] for i in rng.permutation(len(entries))]
        path = osp.join(out, 'train_test_split',
                        f'shuffled_{split}_file_list.json')
        with open(path, 'w') as f:
            json.dump(entries, f)
        counts[split] = len(entries)
    return counts


def category_count(text: str) -> Tuple[str, int]:
    """Parse a ``CATEGORY=COUNT`` item of ``--category-shapes``.

    Args:
        text (str): For example ``'Mug=10'``.

    Returns:
        tuple[str, int]: The category and its number of shapes.
    """
    category, sep, count = text.partition('=')
    if not sep or category not in BUILDERS or not count.isdigit() \
            or int(count) < 1:
        raise argparse.ArgumentTypeError(
            f'expected CATEGORY=COUNT with CATEGORY one of {list(CATEGORIES)}'
            f' and COUNT >= 1, but got {text!r}')
    return category, int(count)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Generate a procedural dataset in the ShapeNet part '
        'segmentation layout (shapenetcore_partanno_segmentation_'
        'benchmark_v0_normal).')
    parser.add_argument('--out', default=DEFAULT_OUT, help='output folder')
    parser.add_argument(
        '--shapes-per-category',
        type=int,
        default=40,
        help='shapes per category')
    parser.add_argument(
        '--category-shapes',
        nargs='+',
        type=category_count,
        default=[],
        metavar='CATEGORY=COUNT',
        help='other numbers of shapes for some categories, e.g. Mug=10')
    parser.add_argument(
        '--points', type=int, default=2048, help='points per shape')
    parser.add_argument('--seed', type=int, default=0, help='random seed')
    parser.add_argument(
        '--categories',
        nargs='+',
        default=list(CATEGORIES),
        choices=list(CATEGORIES),
        help='categories to generate')
    parser.add_argument(
        '--overwrite',
        action='store_true',
        help='replace the generated files in a non-empty --out')
    args = parser.parse_args(argv)
    named = [c for c, _ in args.category_shapes]
    repeated = sorted({c for c in named if named.count(c) > 1})
    if repeated:
        parser.error(f'--category-shapes names {repeated} more than once')
    return args


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    counts = generate(
        args.out,
        shapes_per_category=args.shapes_per_category,
        num_points=args.points,
        seed=args.seed,
        categories=args.categories,
        overwrite=args.overwrite,
        category_shapes=dict(args.category_shapes))
    print(f'wrote {sum(counts.values())} shapes to {args.out} '
          f'(train {counts["train"]}, val {counts["val"]}, '
          f'test {counts["test"]})')


if __name__ == '__main__':
    main()
