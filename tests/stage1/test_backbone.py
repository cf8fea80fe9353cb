"""The shared backbone: the TFLite import, the committed float32 trunk (and the int8 export),
transformers backbones."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from stage1.backbone import Backbone, BackboneInfo, HFBackbone, load_backbone, preprocess
from stage1.mobilenet_v2 import MobileNetV2, MobileNetV2Config
from stage1.paths import BASE_DIR, TFLITE_DIR

torch.set_num_threads(1)


def _blobs(seed: int, size: int = 300) -> np.ndarray:
    """A procedural 'product': coloured ellipses and a stripe on white."""
    import cv2

    rng = np.random.default_rng(seed)
    im = np.full((size, size, 3), 255, np.uint8)
    for _ in range(4):
        c = tuple(int(v) for v in rng.integers(0, 255, 3))
        centre = tuple(int(v) for v in rng.integers(size // 4, 3 * size // 4, 2))
        axes = tuple(int(v) for v in rng.integers(size // 10, size // 3, 2))
        cv2.ellipse(im, centre, axes, float(rng.uniform(0, 180)), 0, 360, c, -1)
    cv2.rectangle(im, (size // 5, size // 2), (4 * size // 5, size // 2 + size // 12), (20, 20, 20), -1)
    return im


def test_mobilenet_tf_padding_matches_transformers():
    """Our folded-BN MobileNetV2 equals transformers' (tf_padding=True) with identity batch norm."""
    from transformers import MobileNetV2Config as HFConfig, MobileNetV2Model

    hf = MobileNetV2Model(HFConfig(tf_padding=True, depth_multiplier=1.0, expand_ratio=6,
                                   first_layer_is_expansion=True, finegrained_output=True,
                                   hidden_act="relu6", layer_norm_eps=0.001)).eval()
    ours = MobileNetV2(MobileNetV2Config(num_classes=0)).eval()
    hf_convs = [m for m in hf.modules() if m.__class__.__name__ == "MobileNetV2ConvLayer"]
    ours_convs = ours.conv_layers()
    assert len(hf_convs) == len(ours_convs) == 52
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for h, o in zip(hf_convs, ours_convs):
            w = torch.randn(h.convolution.weight.shape, generator=g) * 0.1
            b = torch.randn(h.convolution.weight.shape[0], generator=g) * 0.1
            h.convolution.weight.copy_(w)
            o.conv.weight.copy_(w)
            bn = h.normalization  # identity carrying the bias: (x - 0) / sqrt(1 - eps + eps) * 1 + b
            bn.weight.fill_(1), bn.bias.copy_(b), bn.running_mean.zero_(), bn.running_var.fill_(1 - bn.eps)
            o.conv.bias.copy_(b)
        x = torch.randn(2, 3, 224, 224, generator=g)
        ref = hf(x).last_hidden_state
        got = ours.forward_features(x)["final"]
    assert got.shape == ref.shape == (2, 1280, 7, 7)
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)


@pytest.fixture(scope="module")
def backbone() -> Backbone:
    if not (BASE_DIR / "backbone.json").is_file():
        pytest.fail("weights/mobilenet_v2 is not committed; run `agpis weights import`")
    return Backbone(BASE_DIR, threads=1)


def test_committed_backbone_shapes_and_contract(backbone):
    ims = [_blobs(0), _blobs(1, 500)[:400]]
    f = backbone.features(ims)
    assert f["patch"].shape == (2, 14, 14, 576) and f["patch"].dtype == np.float32
    assert f["final"].shape == (2, 49, 1280) and f["final"].dtype == np.float32
    assert f["final"].min() >= 0 and f["final"].max() <= 6.01  # ReLU6 output
    np.testing.assert_array_equal(backbone.image_tokens(ims), f["final"])  # deterministic
    assert backbone.features([])["final"].shape == (0, 49, 1280)


def test_images_per_call_do_not_change_the_maps(backbone):
    """stage1.backbone_batch only splits the ONNX calls: every image's maps are those of one call
    over all of them, bit for bit (MobileNetV2 has no layer that mixes a batch's images)."""
    ims = [_blobs(seed) for seed in range(5)]
    whole = backbone.features(ims)
    for step in (1, 2, 4):
        split = Backbone(BASE_DIR, threads=1, max_batch=step).features(ims)
        for key in ("patch", "final"):
            np.testing.assert_array_equal(split[key], whole[key])
    with pytest.raises(ValueError, match="backbone_batch"):
        Backbone(BASE_DIR, max_batch=-1)


def test_backbone_features_are_meaningful(backbone):
    """A resized copy stays close; a different product is farther (real pretrained weights)."""
    import cv2

    a, b = _blobs(3), _blobs(4)
    a_small = cv2.resize(a, (180, 180), interpolation=cv2.INTER_AREA)
    f = backbone.features([a, a_small, b])["final"].mean(1)
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    assert f[0] @ f[1] > 0.95
    assert f[0] @ f[2] < f[0] @ f[1] - 0.05


def test_backbone_rejects_bad_input(backbone):
    with pytest.raises(ValueError, match="uint8"):
        backbone.features([np.zeros((10, 10, 3), np.float32)])
    with pytest.raises(ValueError, match="expected"):
        backbone.features([np.zeros((10, 10), np.uint8)])


def test_backbone_checks_sha256(tmp_path):
    import shutil

    for name in ("backbone.json", BackboneInfo.read(BASE_DIR / "backbone.json").onnx_file):
        shutil.copy(BASE_DIR / name, tmp_path / name)
    info = BackboneInfo.read(tmp_path / "backbone.json")
    info.onnx_sha256 = "0" * 64
    info.write(tmp_path / "backbone.json")
    with pytest.raises(ValueError, match="sha256"):
        Backbone(tmp_path)
    with pytest.raises(ValueError, match="unknown backbone"):
        load_backbone(tmp_path / "nowhere")


@pytest.mark.parametrize("kind", ["resnet", "vit", "mobilenet_v2"])
def test_hf_backbones_from_local_directory(tmp_path, kind):
    """transformers backbones load from a directory (tiny random configs) and give the same dict."""
    import transformers as tf

    if kind == "resnet":
        model = tf.ResNetModel(tf.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1]))
    elif kind == "vit":
        model = tf.ViTModel(tf.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                         num_attention_heads=2, intermediate_size=64), add_pooling_layer=False)
    else:
        model = tf.MobileNetV2Model(tf.MobileNetV2Config(depth_multiplier=0.35, image_size=64))
    model.save_pretrained(tmp_path)
    bb = load_backbone(f"hf:{tmp_path}")
    assert isinstance(bb, HFBackbone)
    f = bb.features([_blobs(0, 120), _blobs(1, 90)])
    assert f["patch"].ndim == 4 and f["patch"].shape[0] == 2
    assert f["final"].ndim == 3 and f["final"].shape[0] == 2
    if kind == "vit":
        assert f["patch"].shape == (2, 4, 4, 32) and f["final"].shape == (2, 16, 32)
    if kind == "resnet":  # stride 16 map is twice the final map's side
        assert f["patch"].shape[1] == 2 * int(round(f["final"].shape[1] ** 0.5))


def test_preprocess_range():
    from stage1.backbone import Preprocessing

    x = preprocess([np.full((50, 80, 3), 255, np.uint8), np.zeros((300, 300, 3), np.uint8)], Preprocessing())
    assert x.shape == (2, 3, 224, 224)
    assert abs(x[0].max() - 1.0) < 0.01 and abs(x[1].min() + 0.996) < 0.01


@pytest.mark.shared
@pytest.mark.slow
def test_import_agrees_with_tflite_on_real_photos(shared_dir):
    """The PyTorch import's top-1 agrees with the TFLite interpreter (ai-edge-litert)."""
    pytest.importorskip("ai_edge_litert")
    from stage1.tflite_import import check_photos, import_mobilenet_v2, load_rgb, tflite_predict

    source = shared_dir / TFLITE_DIR / "tf2_mobilenet_v2_1.0_224_ptq.tflite"
    model, (scale, zp) = import_mobilenet_v2(source)
    photos = np.stack([load_rgb(p, 224) for p in check_photos(shared_dir)[::2]])
    x = torch.from_numpy((photos.astype(np.float32) - zp) * scale).permute(0, 3, 1, 2)
    with torch.no_grad():
        ours = model(x).softmax(-1).numpy()
    ref = tflite_predict(source, photos)
    agree = ours.argmax(1) == ref.argmax(1)
    assert agree.mean() >= 0.85, agree.mean()
    # Where TFLite is confident the two must agree.
    assert agree[ref.max(1) > 0.5].all()


def test_int8_export_folds_the_same_pads_without_changing_outputs(tmp_path, monkeypatch):
    """export_int8_onnx quantises, then moves the TF 'SAME' pads into the convolutions
    (stage1/onnx_fold.py): the folded graph has no Pad left and gives exactly the same maps."""
    import onnx
    import onnxruntime as ort

    from stage1.onnx_fold import fold_static_pads
    from stage1.tflite_import import export_int8_onnx

    cfg = MobileNetV2Config(stages=((1, 8, 1, 1), (2, 8, 1, 2), (2, 16, 1, 2), (2, 16, 1, 2), (2, 16, 1, 1),
                                    (2, 24, 1, 2), (2, 24, 1, 1)), stem_channels=8, last_channels=32,
                            num_classes=0, image_size=64, patch_block=4)
    torch.manual_seed(0)
    model = MobileNetV2(cfg).eval()
    calib = np.random.default_rng(0).uniform(-1, 1, (4, 3, 64, 64)).astype(np.float32)
    folded = tmp_path / "folded.onnx"
    export_int8_onnx(model, folded, calib)
    assert not [n for n in onnx.load(str(folded)).graph.node if n.op_type == "Pad"]
    assert fold_static_pads(folded, tmp_path / "again.onnx", 64) == 0  # idempotent

    # unfolded reference: keep a copy of the quantised graph the pass receives
    import shutil

    import stage1.onnx_fold as fold_mod

    seen, real = {}, fold_mod.fold_static_pads

    def keep_copy(src, dst, size):
        shutil.copy(src, tmp_path / "unfolded.onnx")
        seen["n"] = real(src, dst, size)
        return seen["n"]

    monkeypatch.setattr(fold_mod, "fold_static_pads", keep_copy)
    export_int8_onnx(model, tmp_path / "folded2.onnx", calib)
    assert seen["n"] > 0
    x = np.random.default_rng(1).uniform(-1, 1, (3, 3, 64, 64)).astype(np.float32)
    a = ort.InferenceSession(str(tmp_path / "unfolded.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    b = ort.InferenceSession(str(tmp_path / "folded2.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


def test_committed_trunk_is_the_float_model_folded(backbone):
    """The shipped trunk is float32 (stage1/backbone.py: the int8 one's maps differed between CPUs
    with and without VNNI, and so did every decision): ONNX Runtime gives the PyTorch float model's
    maps, and its TF 'SAME' pads are folded into the convolutions (no Pad left)."""
    import onnx

    from stage1.backbone import ONNX_FILE
    from stage1.tflite_import import load_float_model

    assert backbone.info.onnx_file == ONNX_FILE
    graph = onnx.load(str(BASE_DIR / ONNX_FILE)).graph
    assert {n.op_type for n in graph.node} <= {"Conv", "Clip", "Add", "Constant"}
    model = load_float_model(BASE_DIR)
    ims = [_blobs(5), _blobs(6, 400)]
    ours = backbone.features(ims)
    x = torch.from_numpy(np.ascontiguousarray(preprocess(ims, backbone.preprocessing)))
    with torch.no_grad():
        ref = model.forward_features(x)
    # the safetensors copy stores float16 weights, the trunk the import's float32 ones: close, not equal
    from stage1.tflite_import import _cosine

    assert (_cosine(ours["final"].mean(1), ref["final"].mean((2, 3)).numpy()) > 0.999).all()
    assert (_cosine(ours["patch"].reshape(2, -1), ref["patch"].permute(0, 2, 3, 1).reshape(2, -1).numpy()) > 0.999).all()


def test_float_export_folds_the_pads_without_changing_outputs(tmp_path):
    """export_f32_onnx folds the pads (stage1/onnx_fold.py): the same maps as the unfolded graph."""
    import onnx
    import onnxruntime as ort

    from stage1.tflite_import import export_f32_onnx

    cfg = MobileNetV2Config(stages=((1, 8, 1, 1), (2, 8, 1, 2), (2, 16, 1, 2), (2, 16, 1, 2), (2, 16, 1, 1),
                                    (2, 24, 1, 2), (2, 24, 1, 1)), stem_channels=8, last_channels=32,
                            num_classes=0, image_size=64, patch_block=4)
    torch.manual_seed(0)
    model = MobileNetV2(cfg).eval()
    export_f32_onnx(model, tmp_path / "folded.onnx")
    export_f32_onnx(model, tmp_path / "raw.onnx", fold=False)
    assert not [n for n in onnx.load(str(tmp_path / "folded.onnx")).graph.node if n.op_type == "Pad"]
    assert [n for n in onnx.load(str(tmp_path / "raw.onnx")).graph.node if n.op_type == "Pad"]
    x = np.random.default_rng(1).uniform(-1, 1, (3, 3, 64, 64)).astype(np.float32)
    a = ort.InferenceSession(str(tmp_path / "raw.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    b = ort.InferenceSession(str(tmp_path / "folded.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    for u, v in zip(a, b):
        np.testing.assert_allclose(u, v, atol=1e-5)


def test_backbone_batch_bench_measures_each_call_size():
    """`agpis bench stage1 --backbone-batch`: CPU ms per image for each size and thread count,
    and the markdown table that docs/benchmarks.md gets."""
    from stage1.bench import backbone_batch_markdown, backbone_batch_sizes

    got = backbone_batch_sizes(BASE_DIR, sizes=(1, 3), threads=(1,), seconds=0.05, log=lambda *_: None)
    assert list(got) == [1] and list(got[1]) == [1, 3] and all(v > 0 for v in got[1].values())
    table = backbone_batch_markdown(got, "v-test")
    assert "| threads | 1 | 3 |" in table and table.count("\n| 1 | ") == 1 and "v-test" in table
