import numpy as np

from kirinuki.core.instances import bbox, crop_box, fill_holes, instances_from_mask


def test_components_specks_holes_and_order():
    prob = np.zeros((40, 60), np.float32)
    prob[5:15, 5:15] = 0.9  # 100 px
    prob[8:11, 8:11] = 0.1  # a hole inside it
    prob[20:38, 30:58] = 0.8  # 504 px: the largest -> k=1
    prob[0, 59] = 1.0  # a speck
    labels = instances_from_mask(prob, 0.5, min_area=0.01, holes=True)
    assert labels.dtype == np.uint8
    assert labels[25, 40] == 1 and labels[6, 6] == 2
    assert labels[9, 9] == 2  # hole filled
    assert labels[0, 59] == 0  # speck dropped
    assert sorted(np.unique(labels)) == [0, 1, 2]
    unfilled = instances_from_mask(prob, 0.5, min_area=0.01, holes=False)
    assert unfilled[9, 9] == 0


def test_many_instances_use_uint16():
    prob = np.zeros((64, 64), np.float32)
    prob[::2, ::2] = 1.0  # 1024 isolated pixels, 8-connected? no: 2 px apart
    labels = instances_from_mask(prob, 0.5, min_area=0, holes=False)
    assert labels.dtype == np.uint16 and labels.max() == 1024


def test_fill_holes_keeps_open_bays():
    m = np.zeros((9, 9), bool)
    m[1:8, 1:8] = True
    m[3:6, 3:6] = False  # enclosed
    m[4, 7] = False  # notch open to the outside stays open
    f = fill_holes(m)
    assert f[4, 4] and not f[4, 7]


def test_bbox_and_crop_box():
    m = np.zeros((10, 20), bool)
    m[2:5, 3:9] = True
    assert bbox(m) == (3, 2, 9, 5)
    assert crop_box((3, 2, 9, 5), m.shape, 0.5) == (0, 0, 12, 8)


def test_uncertain_regions_are_no_characters_and_labels_stay_dense():
    prob = np.zeros((40, 60), np.float32)
    prob[2:20, 2:30] = 0.7  # the largest region, but the model only half-believes it
    prob[2:8, 2:30] = 0.95  # a confident third of it: below min_core 0.5
    prob[25:38, 35:55] = 0.97  # a confident character
    prob[25:35, 2:12] = 0.92
    labels = instances_from_mask(prob, 0.5, min_area=0.01, holes=True, core_prob=0.9, min_core=0.5)
    assert labels[10, 10] == 0
    assert labels[30, 40] == 1 and labels[30, 5] == 2 and labels.max() == 2
    kept = instances_from_mask(prob, 0.5, min_area=0.01, holes=True)  # off by default
    assert kept[10, 10] == 1 and kept.max() == 3
