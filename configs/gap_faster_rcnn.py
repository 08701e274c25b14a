# The headline entry point: C-GaP Faster R-CNN R50-FPN on COCO, 36 epochs,
# configs/gap/cgap_faster-rcnn_r50-fpn_8xb2-3x_coco.py under a short name.
#   tools/dist_train.sh configs/gap_faster_rcnn.py 8
_base_ = './gap/cgap_faster-rcnn_r50-fpn_8xb2-3x_coco.py'
