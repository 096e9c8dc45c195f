"""The page in a real browser (headless Chromium): upload and record speech, enrol and verify signatures."""

import numpy as np
import pytest
import soundfile

from tests.serve.conftest import SPEECH_SAMPLES, TOKEN, RunningServer, genuine
from tests.serve.test_api import digit_string

# How long an answer may take to show; the servers themselves are waited for until ready.
WAIT_SECONDS = 120


def wait_for(driver, css, text_present=True):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    locator = (By.CSS_SELECTOR, css)
    WebDriverWait(driver, WAIT_SECONDS).until(expected_conditions.visibility_of_element_located(locator))
    if text_present:
        WebDriverWait(driver, WAIT_SECONDS).until(lambda d: d.find_element(*locator).text.strip())
    return driver.find_element(*locator)


def page_errors(driver):
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


@pytest.fixture(scope="module")
def both_models(speech_model_path, signature_model_path, tmp_path_factory):
    """One server for the page tests (starting one loads the models and warms them up)."""
    folder = tmp_path_factory.mktemp("page-server")
    server = RunningServer([str(a) for a in ("--speech-model", speech_model_path, "--signature-model",
                                             signature_model_path, "--store", folder / "store.sqlite",
                                             "--token", TOKEN)], folder)
    yield server
    server.stop()


def test_uploaded_wav_shows_its_digit(both_models, browser_factory, tmp_path):
    from selenium.webdriver.common.by import By

    driver = browser_factory()
    driver.get(both_models.url + "/")
    wait_for(driver, "#status")
    assert "speech: digits.npz" in driver.find_element(By.ID, "status").text
    clip = SPEECH_SAMPLES / "7" / "gb_165_50.wav"
    driver.find_element(By.ID, "audio-file").send_keys(str(clip))
    answer = wait_for(driver, "[data-testid=speech-answer]")
    driver.save_screenshot(str(tmp_path / "speech-upload.png"))
    assert driver.find_element(By.ID, "speech-label").text == "7"
    assert "confident" in answer.text and "gb_165_50.wav" in answer.text
    history = driver.find_elements(By.CSS_SELECTOR, "#speech-history li")
    assert len(history) == 1 and "7" in history[0].text

    driver.find_element(By.TAG_NAME, "body").send_keys("t")  # a digit string now
    driver.find_element(By.ID, "audio-file").send_keys(str(digit_string(tmp_path, "5028")))
    wait_for(driver, "[data-testid=speech-answer] .segments span")
    driver.save_screenshot(str(tmp_path / "speech-digit-string.png"))
    assert driver.find_element(By.ID, "speech-label").text == "5028"
    assert len(driver.find_elements(By.CSS_SELECTOR, "[data-testid=speech-answer] .segments span")) == 4
    assert not page_errors(driver)


@pytest.mark.parametrize("digit", ["3", "8"])
def test_recording_through_the_microphone_shows_the_digit(both_models, browser_factory, tmp_path, digit):
    from selenium.webdriver.common.by import By

    # Chromium's fake microphone plays this file in a loop: the word, then silence, so that a
    # recording of about two seconds holds the word once.
    samples, rate = soundfile.read(SPEECH_SAMPLES / digit / "us_165_50.wav", dtype="float32")
    padded = np.concatenate([np.zeros(int(0.3 * rate)), samples, np.zeros(int(3.0 * rate))]).astype(np.float32)
    microphone = tmp_path / "microphone.wav"
    soundfile.write(microphone, padded, rate, subtype="PCM_16")
    driver = browser_factory("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                             f"--use-file-for-fake-audio-capture={microphone}")
    driver.get(both_models.url + "/")
    wait_for(driver, "#status")
    body = driver.find_element(By.TAG_NAME, "body")
    body.send_keys("r")  # the keyboard shortcut starts a recording ...
    wait_for(driver, "#meter", text_present=False)
    driver.save_screenshot(str(tmp_path / "speech-recording.png"))
    import time

    time.sleep(2.0)
    body.send_keys("r")  # ... and stops it
    wait_for(driver, "[data-testid=speech-answer]")
    driver.save_screenshot(str(tmp_path / "speech-recorded.png"))
    assert driver.find_element(By.ID, "speech-label").text == digit
    assert "recording" in driver.find_element(By.CSS_SELECTOR, "#speech-history li").text
    assert not page_errors(driver)


def test_enrol_then_verify_genuine_and_forged(both_models, browser_factory, clearest_forgery, tmp_path):
    from selenium.webdriver.common.by import By

    driver = browser_factory()
    driver.get(both_models.url + "/")
    wait_for(driver, "#status")
    body = driver.find_element(By.TAG_NAME, "body")
    body.send_keys("e")  # opens enrolment
    driver.find_element(By.ID, "enrol-writer").send_keys("writer5")
    driver.find_element(By.ID, "enrol-files").send_keys("\n".join(str(p) for p in genuine("writer5", range(1, 7))))
    driver.find_element(By.ID, "token").send_keys(TOKEN)
    driver.find_element(By.CSS_SELECTOR, "#enrol-form button[type=submit]").click()
    message = wait_for(driver, "#enrol-result.ok")
    assert "6 reference(s) added, 6 in total" in message.text
    assert driver.find_element(By.ID, "writer").get_attribute("value") == "writer5"
    assert driver.find_element(By.ID, "writer-info").text == "6 references"

    driver.find_element(By.ID, "signature-file").send_keys(str(genuine("writer5", [9])[0]))
    verdict = wait_for(driver, "[data-testid=verdict].genuine")
    pictures = reference_pictures(driver)
    driver.save_screenshot(str(tmp_path / "signature-genuine.png"))
    assert driver.find_element(By.ID, "verdict-word").text.lower() == "genuine"
    assert "writer5, 6 references" in verdict.text
    assert [picture.get_attribute("alt") for picture in pictures] == [f"reference {n}: 0{n}.png" for n in range(1, 7)]

    driver.find_element(By.ID, "explain").click()
    driver.find_element(By.ID, "signature-file").send_keys(str(clearest_forgery))
    wait_for(driver, "[data-testid=verdict].forged")
    explanation = wait_for(driver, "[data-testid=explanation]")
    assert len(reference_pictures(driver)) == 6  # beside the verdict and the explanation
    driver.execute_script("arguments[0].scrollIntoView()", explanation)
    driver.save_screenshot(str(tmp_path / "signature-forged.png"))
    assert driver.find_element(By.ID, "verdict-word").text.lower() == "forged"
    picture = explanation.find_element(By.TAG_NAME, "img")
    assert driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", picture) > 300
    assert "what pulled the score towards forged" in explanation.text
    history = [item.text for item in driver.find_elements(By.CSS_SELECTOR, "#signature-history li")]
    assert len(history) == 2 and "forged" in history[0] and "genuine" in history[1]
    assert not page_errors(driver)


def reference_pictures(driver):
    """The pictures of the claimed writer's references beside the verdict, once every one has loaded."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    figure = wait_for(driver, "[data-testid=references]")
    loaded = "return arguments[0].complete && arguments[0].naturalWidth > 0"
    WebDriverWait(driver, WAIT_SECONDS).until(lambda d: (pictures := figure.find_elements(By.TAG_NAME, "img")) and all(
        d.execute_script(loaded, picture) for picture in pictures))
    return figure.find_elements(By.TAG_NAME, "img")


def test_a_store_without_pictures_says_so_beside_the_verdict(signature_model_path, browser_factory, tmp_path):
    from selenium.webdriver.common.by import By

    from tests.serve.conftest import store_without_pictures

    store = store_without_pictures(signature_model_path, tmp_path / "old.sqlite", "writer6", range(1, 5))
    server = RunningServer(["--signature-model", str(signature_model_path), "--store", str(store), "--workers", "1",
                            "--read-token", TOKEN], tmp_path)
    try:
        driver = browser_factory()
        driver.get(server.url + "/")
        wait_for(driver, "#status")
        driver.find_element(By.ID, "token").send_keys(TOKEN)
        driver.find_element(By.ID, "writer").send_keys("writer6")
        driver.find_element(By.ID, "signature-file").send_keys(str(genuine("writer6", [8])[0]))
        wait_for(driver, "[data-testid=verdict]")
        note = wait_for(driver, "[data-testid=no-pictures]")
        driver.save_screenshot(str(tmp_path / "signature-no-pictures.png"))
        assert "No pictures are kept of writer6's 4 references" in note.text
        assert not driver.find_elements(By.CSS_SELECTOR, "[data-testid=references] img")
        assert not page_errors(driver)
    finally:
        server.stop()


def test_wrong_token_and_unknown_writer_are_shown(both_models, browser_factory, tmp_path):
    from selenium.webdriver.common.by import By

    driver = browser_factory()
    driver.get(both_models.url + "/")
    wait_for(driver, "#status")
    driver.find_element(By.TAG_NAME, "body").send_keys("e")
    driver.find_element(By.ID, "enrol-writer").send_keys("writer6")
    driver.find_element(By.ID, "enrol-files").send_keys("\n".join(str(p) for p in genuine("writer6", range(1, 4))))
    driver.find_element(By.ID, "token").send_keys("not-the-token")
    driver.find_element(By.CSS_SELECTOR, "#enrol-form button[type=submit]").click()
    assert wait_for(driver, "#enrol-result.bad").text == "the token is wrong"

    driver.find_element(By.ID, "writer").send_keys("nobody")
    driver.find_element(By.ID, "signature-file").send_keys(str(genuine("writer6", [4])[0]))
    error = wait_for(driver, "#signature-result .error")
    driver.save_screenshot(str(tmp_path / "signature-errors.png"))
    assert error.text == "writer 'nobody' is not enrolled"
