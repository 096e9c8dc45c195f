"""The service answers a recording by its bytes, as the CLI does: never by the name it was uploaded under."""

import numpy as np
import soundfile

from inkvoice.serve.service import Service, Upload
from tests.serve.conftest import SPEECH_SAMPLES


def test_the_same_bytes_under_other_names_get_the_same_answer(speech_model_path, tmp_path, monkeypatch):
    from inkvoice.speech.model import SpeechModel

    monkeypatch.setenv("INKVOICE_CACHE", str(tmp_path / "cache"))
    first, _ = soundfile.read(SPEECH_SAMPLES / "3" / "gb_130_35.wav", dtype="float32")
    second, _ = soundfile.read(SPEECH_SAMPLES / "8" / "gb_165_50.wav", dtype="float32")
    n = min(first.size, second.size)
    path = tmp_path / "mix.wav"
    soundfile.write(path, (first[:n] + second[:n]) / 2, 8000)
    service = Service(speech_model_path, test_copies=8)
    try:
        answers = [service.predict_speech(Upload(name, path.read_bytes()), top_k=3)
                   for name in ("a.wav", "b.wav", "recording.wav", "x y.wav", "3_me_0.wav", "a.wav")]
    finally:
        service.close()
    assert len({str({k: v for k, v in answer.items() if k != "file"}) for answer in answers}) == 1
    # The library path the CLI takes gives the same answer from the file on disk.
    (record,) = SpeechModel.load(speech_model_path).predict_files([path], top_k=3, test_copies=8)
    assert {k: v for k, v in record.items() if k != "file"} == {k: v for k, v in answers[0].items() if k != "file"}
    assert np.isfinite(answers[0]["confidence"])
