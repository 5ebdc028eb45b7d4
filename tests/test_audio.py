import numpy as np
import pytest

from rtwhisper.audio import StreamResampler, to_float32_mono, validate_input_spec
from rtwhisper.errors import AudioFormatError


def test_float32_passes_through_unchanged():
    x = np.linspace(-1, 1, 100, dtype=np.float32)
    np.testing.assert_array_equal(to_float32_mono(x), x)


def test_int16_is_scaled():
    x = np.array([0, 16384, -32768], dtype=np.int16)
    np.testing.assert_allclose(to_float32_mono(x), [0.0, 0.5, -1.0])


def test_bytes_f32le_and_s16le():
    x = np.array([0.25, -0.5], dtype="<f4")
    np.testing.assert_allclose(to_float32_mono(x.tobytes()), [0.25, -0.5])
    y = np.array([16384, -16384], dtype="<i2")
    np.testing.assert_allclose(to_float32_mono(y.tobytes(), bytes_format="s16le"), [0.5, -0.5])


def test_partial_sample_bytes_rejected_with_counts():
    with pytest.raises(AudioFormatError, match=r"7 bytes.*whole number of f32le"):
        to_float32_mono(b"\x00" * 7)


@pytest.mark.parametrize("dtype", [np.int32, np.uint8, np.complex64, object])
def test_wrong_dtype_names_the_accepted_ones(dtype):
    with pytest.raises(AudioFormatError, match="float32, float64, int16"):
        to_float32_mono(np.zeros(4, dtype=dtype))


def test_nan_and_inf_rejected():
    with pytest.raises(AudioFormatError, match="2 NaN or infinite"):
        to_float32_mono(np.array([0.0, np.nan, np.inf], dtype=np.float32))


def test_stereo_needs_explicit_downmix():
    stereo = np.stack([np.ones(10), -np.ones(10) * 0.5], axis=1).astype(np.float32)
    with pytest.raises(AudioFormatError, match="channels=2"):
        to_float32_mono(stereo)
    np.testing.assert_allclose(to_float32_mono(stereo, channels=2), np.full(10, 0.25))
    interleaved = stereo.reshape(-1).tobytes()
    np.testing.assert_allclose(to_float32_mono(interleaved, channels=2), np.full(10, 0.25))


def test_not_audio_at_all():
    with pytest.raises(AudioFormatError, match="cannot feed list"):
        to_float32_mono([0.0, 1.0])
    with pytest.raises(AudioFormatError, match=r"1-D .* or 2-D"):
        to_float32_mono(np.zeros((2, 2, 2), dtype=np.float32))


def test_unknown_sample_rate_lists_accepted_rates():
    with pytest.raises(AudioFormatError, match="44100"):
        validate_input_spec(12345, 1, "f32le")
    with pytest.raises(AudioFormatError, match="f32le, s16le"):
        validate_input_spec(16000, 1, "mp3")


@pytest.mark.parametrize("rate", [8000, 44100, 48000])
def test_resampler_is_split_invariant_and_keeps_length_and_pitch(rate):
    t = np.arange(rate * 2) / rate
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    whole = StreamResampler(rate)
    a = np.concatenate([whole.process(tone), whole.process(np.zeros(0, np.float32), final=True)])
    pieces = StreamResampler(rate)
    rng = np.random.default_rng(1)
    cuts = np.sort(rng.choice(len(tone), 20, replace=False))
    b = np.concatenate([pieces.process(p) for p in np.split(tone, cuts)] + [pieces.process(
        np.zeros(0, np.float32), final=True)])
    assert len(a) == len(b) == 32000
    np.testing.assert_allclose(a, b, atol=1e-5)
    spectrum = np.abs(np.fft.rfft(a))
    assert abs(np.argmax(spectrum) * 16000 / len(a) - 440) < 2
