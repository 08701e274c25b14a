# The second detection task: crowded, small shapes of 10 classes in COCO
# format, 160x160 images, 6-14 objects each of 8-32 px (the demo's data has
# 2-6 objects of 10-56 px and 6 classes; a pentagon and a hexagon differ
# only in fine detail). Written by
#   python tools/dataset_converters/gen_synthetic_coco.py \
#       --out data/synthetic_coco_crowded --num-train 1000 --num-val 100 \
#       --img-size 160 --seed 1 --min-objects 6 --max-objects 14 \
#       --min-size 8 --max-size 32 --classes circle square triangle cross \
#       ring star pentagon hexagon semicircle arrow
_base_ = './synthetic-coco.py'
data_root = 'data/synthetic_coco_crowded/'
metainfo = dict(
    classes=('circle', 'square', 'triangle', 'cross', 'ring', 'star',
             'pentagon', 'hexagon', 'semicircle', 'arrow'))
train_dataloader = dict(
    dataset=dict(data_root=data_root, metainfo=metainfo))
val_dataloader = dict(dataset=dict(data_root=data_root, metainfo=metainfo))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root +
                     'annotations/instances_val2017.json')
test_evaluator = val_evaluator
