from .dispatch import (ball_query, furthest_point_sample,
                       furthest_point_sample_with_dist, gather_points,
                       get_point_op, grouping_operation, three_interpolate,
                       three_nn)

__all__ = [
    'ball_query', 'furthest_point_sample', 'furthest_point_sample_with_dist',
    'gather_points', 'get_point_op', 'grouping_operation',
    'three_interpolate', 'three_nn'
]
