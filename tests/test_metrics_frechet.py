"""FID / FVD: the Frechet distance in float64 against a numpy/scipy reference and torchmetrics, its behaviour
with the weight-free feature networks, and clear errors for weights files in the wrong format."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import linalg

from dawn_lightning.metrics.fid import FID, InceptionFeatures, image_features
from dawn_lightning.metrics.frechet import FrechetFeatureDistance
from dawn_lightning.metrics.fvd import FVD, I3DFeatures, video_clips, video_features
from dawn_lightning.metrics.random_features import RandomImageFeatures, RandomVideoFeatures
from dawn_lightning.metrics.weights import WeightsFormatError

pytestmark = pytest.mark.usefixtures("one_thread")


def reference_frechet(a: np.ndarray, b: np.ndarray) -> float:
    """The textbook formula on float64 features: np.cov (unbiased) and scipy's sqrtm."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * root))


class Identity(torch.nn.Module):
    dim = 6

    def forward(self, x):
        return x


def test_frechet_matches_numpy_reference_on_random_features():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((300, 6))
    b = rng.standard_normal((250, 6)) @ rng.standard_normal((6, 6)) * 0.7 + 0.3
    metric = FID(Identity(), batch_size=64)
    metric.update(torch.from_numpy(a), real=True)
    metric.update(torch.from_numpy(b[:100]), real=False)  # batches add up to the whole set
    metric.update(torch.from_numpy(b[100:]), real=False)
    assert float(metric.compute()) == pytest.approx(reference_frechet(a, b), rel=1e-9)


def test_frechet_mean_shift_gives_exact_distance():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((200, 4))
    metric = FrechetFeatureDistance(torch.nn.Identity(), 4)
    metric.update(torch.from_numpy(a), real=True, features=True)
    metric.update(torch.from_numpy(a + 0.5), real=False, features=True)
    assert float(metric.compute()) == pytest.approx(4 * 0.25, abs=1e-8)


def test_fvd_matches_reference_on_the_features_of_its_clips():
    torch.manual_seed(0)
    net = RandomVideoFeatures(dim=8)
    real, fake = torch.rand(3, 3, 40, 24, 24), torch.rand(3, 3, 40, 24, 24) * 0.8
    metric = FVD(net, clip_length=8, size=16)
    for video in real:
        metric.update(video, real=True)
    for video in fake:
        metric.update(video, real=False)

    def features(videos):
        clips = torch.cat([video_clips(v, 8) for v in videos])
        frames = torch.nn.functional.interpolate(
            clips.transpose(1, 2).flatten(0, 1), size=(16, 16), mode="bilinear", align_corners=False
        )
        clips = frames.unflatten(0, (len(clips), 8)).transpose(1, 2) * 2 - 1
        return net(clips).double().numpy()

    assert int(metric.real_n) == 15  # 3 videos x 5 clips of 8 frames
    assert float(metric.compute()) == pytest.approx(
        reference_frechet(features(real), features(fake)), rel=1e-6
    )


def test_fid_matches_torchmetrics_given_the_same_features():
    from torchmetrics.image.fid import FrechetInceptionDistance

    torch.manual_seed(0)
    net = RandomImageFeatures(dim=16, size=32)
    real, fake = torch.rand(80, 3, 32, 32), torch.rand(80, 3, 32, 32) ** 2
    ours = FID(net)
    ours.update(real, real=True)
    ours.update(fake, real=False)
    theirs = FrechetInceptionDistance(feature=net, normalize=True, input_img_size=(3, 32, 32))
    theirs.update(real, real=True)
    theirs.update(fake, real=False)
    assert float(ours.compute()) == pytest.approx(float(theirs.compute()), rel=1e-5)


def smooth_images(count: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    low = torch.rand(count, 3, 4, 4, generator=generator)
    return torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)


def test_fid_is_zero_against_itself_and_grows_with_noise():
    images = smooth_images(120)
    net, label = image_features(None, random_dim=16, random_size=32)
    assert "random-feature" in label
    scores = []
    for noise in (0.0, 0.05, 0.2):
        metric = FID(net)
        metric.update(images, real=True)
        noisy = (
            images + noise * torch.randn(images.shape, generator=torch.Generator().manual_seed(1))
        ).clamp(0, 1)
        metric.update(noisy, real=False)
        scores.append(float(metric.compute()))
    assert abs(scores[0]) < 1e-6
    assert scores[0] < scores[1] < scores[2]


def test_fvd_is_zero_against_itself_and_grows_with_noise():
    net, size, label = video_features(None, random_dim=8)
    assert "random-feature" in label and size == 64
    generator = torch.Generator().manual_seed(2)
    videos = torch.nn.functional.interpolate(
        torch.rand(4, 3, 32, 4, 4, generator=generator), size=(32, 16, 16)
    )
    scores = []
    for noise in (0.0, 0.05, 0.3):
        metric = FVD(net, clip_length=8, size=32)
        for video in videos:
            metric.update(video, real=True)
            metric.update(
                (video + noise * torch.randn(video.shape, generator=generator)).clamp(0, 1), real=False
            )
        scores.append(float(metric.compute()))
    assert abs(scores[0]) < 1e-6
    assert scores[0] < scores[1] < scores[2]


def test_frechet_needs_two_samples_per_side():
    metric = FrechetFeatureDistance(torch.nn.Identity(), 3)
    metric.update(torch.zeros(1, 3), real=True, features=True)
    metric.update(torch.zeros(5, 3), real=False, features=True)
    with pytest.raises(ValueError, match="at least 2"):
        metric.compute()


def test_weights_in_the_wrong_format_give_clear_errors(tmp_path):
    text = tmp_path / "weights.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(
        WeightsFormatError, match=r"metrics\.fid\.weights: .*weights\.pth is not a PyTorch state"
    ):
        InceptionFeatures(str(text))
    other = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(2, 2)}, other)
    with pytest.raises(WeightsFormatError, match=r"other\.pth does not fit pytorch-fid's InceptionV3"):
        InceptionFeatures(str(other))
    with pytest.raises(
        WeightsFormatError, match=r"metrics\.fvd\.weights: .*weights\.pth is not a TorchScript"
    ):
        I3DFeatures(str(text))
    with pytest.raises(FileNotFoundError, match=r"metrics\.fid\.weights: .*missing\.pth does not exist"):
        InceptionFeatures(str(tmp_path / "missing.pth"))


def random_fid_inception(path):
    """pytorch-fid's FID Inception with random weights (its real ones cannot be downloaded here), saved as the
    plain state dict its download would give."""
    from unittest import mock

    from pytorch_fid import inception

    captured = {}

    def capture(module, state, *args, **kwargs):
        captured.update(module.state_dict())

    torch.manual_seed(0)
    with (
        mock.patch.object(inception, "load_state_dict_from_url", lambda *args, **kwargs: {}),
        mock.patch.object(torch.nn.Module, "load_state_dict", capture),
    ):
        inception.fid_inception_v3()
    torch.save(captured, path)
    return captured


@pytest.mark.slow
def test_fid_is_pytorch_fids_own_computation_on_the_same_images(tmp_path):
    """Our FID (InceptionFeatures + FID) against pytorch-fid's get_activations (PNG files, ToTensor, its
    InceptionV3 resizing to 299 and scaling to [-1, 1], pool3) and calculate_frechet_distance, with the same
    random Inception weights: the same 2048-d features and the same distance."""
    from unittest import mock

    from PIL import Image
    from pytorch_fid import fid_score, inception

    from dawn_lightning.metrics.fid import InceptionFeatures

    state = random_fid_inception(tmp_path / "inception.pth")
    sides = {"real": smooth_images(6, 64, seed=1), "fake": smooth_images(6, 64, seed=2) ** 2}
    files = {}
    for side, images in sides.items():
        uint8 = (images * 255).round().byte().permute(0, 2, 3, 1).numpy()
        files[side] = [tmp_path / f"{side}{i}.png" for i in range(len(uint8))]
        for image, path in zip(uint8, files[side], strict=True):
            Image.fromarray(image).save(path)
        sides[side] = torch.from_numpy(uint8).permute(0, 3, 1, 2).float() / 255  # what the PNG holds
    with mock.patch.object(inception, "load_state_dict_from_url", lambda *args, **kwargs: state):
        reference = inception.InceptionV3([inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
    theirs = {
        side: fid_score.get_activations(
            [str(f) for f in paths], reference, batch_size=4, dims=2048, num_workers=0
        )
        for side, paths in files.items()
    }
    net = InceptionFeatures(str(tmp_path / "inception.pth")).eval()
    ours = FID(net, batch_size=4)
    with torch.no_grad():
        for side, images in sides.items():
            features = ours.features(images).numpy()
            np.testing.assert_allclose(
                features, theirs[side], rtol=1e-4, atol=1e-5 * np.abs(theirs[side]).max()
            )
            ours.update(images, real=side == "real")
    statistics = [(a.mean(0), np.cov(a, rowvar=False)) for a in (theirs["real"], theirs["fake"])]
    expected = fid_score.calculate_frechet_distance(*statistics[0], *statistics[1])
    assert float(ours.compute()) == pytest.approx(expected, rel=1e-3)


class StandInI3D(torch.nn.Module):
    """StyleGAN-V's i3d_torchscript.pt call signature, with features that show what it was given: per channel
    and frame means, then the input's minimum, maximum, frames, height and width (400 wide, as I3D's)."""

    def forward(
        self, x: torch.Tensor, rescale: bool = True, resize: bool = True, return_features: bool = False
    ) -> torch.Tensor:
        features = torch.zeros(x.shape[0], 400, dtype=x.dtype)
        means = x.mean(dim=(3, 4)).flatten(1)
        features[:, : means.shape[1]] = means
        features[:, 100] = x.amin(dim=(1, 2, 3, 4))
        features[:, 101] = x.amax(dim=(1, 2, 3, 4))
        features[:, 102:105] = torch.tensor(x.shape[2:], dtype=x.dtype)
        features[:, 105] = float(rescale) + 2 * float(resize) + 4 * float(return_features)
        return features


def test_fvd_follows_stylegan_v_protocol_with_a_torchscript_detector(tmp_path):
    """FVD through a TorchScript file (loaded as the real i3d would be): 16-frame clips, resized to 224 px,
    in [-1, 1], called with rescale=False, resize=False, return_features=True; the distance is the Frechet
    distance of exactly those clips' features."""
    torch.jit.script(StandInI3D()).save(str(tmp_path / "i3d.pt"))
    net, size, _ = video_features(str(tmp_path / "i3d.pt"))
    assert isinstance(net, I3DFeatures) and size == 224
    generator = torch.Generator().manual_seed(0)
    real = [torch.rand(3, 34, 40, 40, generator=generator) for _ in range(3)]
    fake = [torch.rand(3, 34, 40, 40, generator=generator) ** 2 for _ in range(3)]
    metric = FVD(net, clip_length=16, size=size)
    for video in real:
        metric.update(video, real=True)
    for video in fake:
        metric.update(video, real=False)

    def features(videos):
        clips = torch.cat([video_clips(v, 16) for v in videos])  # 2 clips of 16 frames a video, 2 left over
        frames = torch.nn.functional.interpolate(
            clips.transpose(1, 2).flatten(0, 1), size=(224, 224), mode="bilinear", align_corners=False
        )
        return net(frames.unflatten(0, (len(clips), 16)).transpose(1, 2) * 2 - 1).double()

    real_features, fake_features = features(real), features(fake)
    assert real_features[:, 102:105].tolist() == [[16, 224, 224]] * 6 and (real_features[:, 105] == 4).all()
    assert real_features[:, 100].min() >= -1 and real_features[:, 101].max() <= 1
    assert real_features[:, 100].min() < -0.9 and real_features[:, 101].max() > 0.9  # scaled to [-1, 1]
    assert int(metric.real_n) == 6
    expected = reference_frechet(real_features.numpy(), fake_features.numpy())
    assert float(metric.compute()) == pytest.approx(expected, rel=1e-6)
