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
        # Started without an enrolment token: the form is off, and says why.
        for control in ("#enrol-writer", "#enrol-files", "#enrol-form button[type=submit]", "#remove"):
            assert not driver.find_element(By.CSS_SELECTOR, control).is_enabled(), control
        driver.find_element(By.TAG_NAME, "body").send_keys("e")
        assert "does not take enrolments" in wait_for(driver, "#enrol-off").text
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


# --- every screen and every user ------------------------------------------------------------

SIZES = {"desktop": (1280, 800), "phone": (375, 667)}

# What a reader would stumble on, measured in the page: a list of problems (empty when all is well).
LAYOUT_PROBLEMS = """
const problems = [];
const root = document.documentElement;
if (root.scrollWidth > window.innerWidth) problems.push(`scrolls sideways: ${root.scrollWidth} > ${window.innerWidth}`);
for (const node of document.querySelectorAll("body *")) {
  const style = getComputedStyle(node);
  const box = node.getBoundingClientRect();
  const ownText = [...node.childNodes].some((child) => child.nodeType === 3 && child.textContent.trim());
  if (!ownText || !box.width || style.visibility === "hidden" || node.closest(".sr-only")) continue;
  if (parseFloat(style.fontSize) < 12) problems.push(`text under 12 px: ${node.tagName} ${node.textContent.trim().slice(0, 40)}`);
  if (box.right > window.innerWidth + 1 && !node.closest(".picture")) {
    problems.push(`text beyond the screen's edge: ${node.tagName} ${node.textContent.trim().slice(0, 40)}`);
  }
}
const status = document.querySelector("#status");
if (status.getBoundingClientRect().width < Math.min(300, window.innerWidth - 60)) {
  problems.push(`the header's status is a narrow column (${status.getBoundingClientRect().width} px)`);
}
const score = document.querySelector("[data-testid=score]");
if (score) {
  const box = score.getBoundingClientRect();
  if (box.height > 2 * parseFloat(getComputedStyle(score).fontSize)) problems.push("the verdict's score wraps");
  if (box.right > score.closest("[data-testid=verdict]").getBoundingClientRect().right) {
    problems.push("the verdict's score runs out of its card");
  }
}
for (const item of document.querySelectorAll("[data-testid=explanation] li, [data-testid=explanation] p")) {
  if (parseFloat(getComputedStyle(item).fontSize) < 14) problems.push("the explanation's text is small");
  if (item.getBoundingClientRect().width < 200) problems.push("the explanation's text is a narrow column");
}
return problems;
"""


def sized_browser(browser_factory, size):
    """A browser whose page is ``size`` CSS pixels, as a phone's or a desktop's (device emulation, not a window)."""
    driver = browser_factory()
    width, height = SIZES[size]
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": size == "phone"})
    return driver


@pytest.mark.parametrize("size", list(SIZES))
def test_the_page_fits_the_screen_and_reads_well(both_models, browser_factory, tmp_path, size):
    from selenium.webdriver.common.by import By

    driver = sized_browser(browser_factory, size)
    driver.get(both_models.url + "/")
    wait_for(driver, "#status.ready")
    driver.find_element(By.ID, "token").send_keys(TOKEN)
    driver.execute_script("document.querySelector('#enrol').open = true")
    driver.save_screenshot(str(tmp_path / f"{size}-start.png"))
    assert driver.execute_script(LAYOUT_PROBLEMS) == []

    enrol = driver.find_element(By.ID, "enrol-writer")
    enrol.send_keys("writer5")
    driver.find_element(By.ID, "enrol-files").send_keys("\n".join(str(p) for p in genuine("writer5", range(1, 7))))
    driver.find_element(By.CSS_SELECTOR, "#enrol-form button[type=submit]").click()
    wait_for(driver, "#enrol-result.ok")
    driver.execute_script("arguments[0].scrollIntoView()", enrol)
    driver.save_screenshot(str(tmp_path / f"{size}-enrolment.png"))
    assert driver.execute_script(LAYOUT_PROBLEMS) == []

    assert driver.find_element(By.ID, "writer").get_attribute("value") == "writer5"  # the writer just enrolled
    driver.find_element(By.ID, "explain").click()
    driver.find_element(By.ID, "signature-file").send_keys(str(genuine("writer5", [9])[0]))
    explanation = wait_for(driver, "[data-testid=explanation]")
    reference_pictures(driver)
    driver.execute_script("document.querySelector('[data-testid=verdict]').scrollIntoView()")
    driver.save_screenshot(str(tmp_path / f"{size}-verdict.png"))
    driver.execute_script("arguments[0].scrollIntoView()", explanation)
    driver.save_screenshot(str(tmp_path / f"{size}-explanation.png"))
    assert driver.execute_script(LAYOUT_PROBLEMS) == []
    assert "score " in driver.find_element(By.CSS_SELECTOR, "[data-testid=score]").text

    driver.find_element(By.TAG_NAME, "body").send_keys("t")
    driver.find_element(By.ID, "audio-file").send_keys(str(digit_string(tmp_path, "5028")))
    wait_for(driver, "[data-testid=speech-answer] .segments span")
    driver.execute_script("document.querySelector('#speech').scrollIntoView()")
    driver.save_screenshot(str(tmp_path / f"{size}-digits.png"))
    assert driver.execute_script(LAYOUT_PROBLEMS) == []
    assert not page_errors(driver)


FOCUS_STOP = """
const node = document.activeElement;
const box = node.getBoundingClientRect();
const style = getComputedStyle(node);
return {name: node.id || node.className || node.tagName, tag: node.tagName, width: box.width, height: box.height,
        hidden: Boolean(node.closest("[aria-hidden=true]")), outline: style.outlineStyle,
        outlineWidth: parseFloat(style.outlineWidth), shadow: style.boxShadow};
"""


@pytest.mark.parametrize("size", list(SIZES))
def test_every_control_is_reached_by_keyboard_and_visibly_focused(both_models, browser_factory, size):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver = sized_browser(browser_factory, size)
    driver.get(both_models.url + "/")
    wait_for(driver, "#status.ready")
    driver.execute_script("document.querySelector('#enrol').open = true")
    stops = []  # from the top of the page to its end
    for _ in range(40):
        ActionChains(driver).send_keys(Keys.TAB).perform()
        stop = driver.execute_script(FOCUS_STOP)
        if stop["tag"] == "BODY" or (stops and stop == stops[0]):
            break
        stops.append(stop)
    names = [stop["name"] for stop in stops]
    for wanted in ("help-button", "audio-button", "record", "writer", "token", "signature-drop", "explain",
                   "enrol-writer", "enrol-files", "remove"):
        assert wanted in names, (wanted, names)
    for stop in stops:
        assert stop["width"] >= 8 and stop["height"] >= 8 and not stop["hidden"], stop  # no invisible tab stop
        assert (stop["outline"] != "none" and stop["outlineWidth"] >= 2) or stop["shadow"] != "none", stop


CANNED = """
const [path, answer] = arguments;
const real = window.fetch;
window.fetch = (url, options) => String(url).includes(path)
  ? Promise.resolve(new Response(JSON.stringify(answer), {status: 200, headers: {"content-type": "application/json"}}))
  : real(url, options);
"""


def test_a_digit_string_with_a_digit_not_read_says_so_beside_the_number(both_models, browser_factory, tmp_path):
    from selenium.webdriver.common.by import By

    driver = sized_browser(browser_factory, "phone")
    driver.get(both_models.url + "/")
    wait_for(driver, "#status.ready")
    # The server's answer for three digits of which the middle one was not read (as the API gives it).
    driver.execute_script(CANNED, "/api/speech/transcribe", {"file": "number.wav", "digits": "11", "segments": [
        {"start": 0.3, "end": 0.7, "label": "1", "confidence": 0.93},
        {"start": 1.0, "end": 1.4, "label": "unknown", "confidence": 0.31},
        {"start": 1.7, "end": 2.1, "label": "1", "confidence": 0.88}]})
    driver.find_element(By.TAG_NAME, "body").send_keys("t")
    driver.find_element(By.ID, "audio-file").send_keys(str(SPEECH_SAMPLES / "1" / "gb_130_35.wav"))
    warning = wait_for(driver, "[data-testid=incomplete]")
    driver.save_screenshot(str(tmp_path / "digits-incomplete.png"))
    assert driver.find_element(By.ID, "speech-label").text == "1?1"
    assert warning.text.startswith("Incomplete: 3 digits heard, the 2nd could not be read (shown as ?).")
    number, beside = (driver.find_element(By.ID, "speech-label").rect, warning.rect)
    assert abs(beside["y"] - (number["y"] + number["height"])) < 40 or abs(beside["y"] - number["y"]) < 40


def test_an_unknown_answer_shows_the_most_likely_digit_as_a_guess(both_models, browser_factory, tmp_path):
    from selenium.webdriver.common.by import By

    driver = browser_factory()
    driver.get(both_models.url + "/")
    wait_for(driver, "#status.ready")
    driver.execute_script(CANNED, "/api/speech/predict", {
        "file": "cough.wav", "label": "unknown", "confidence": 0.41, "reason": "not one of the model's words",
        "top": [{"label": "7", "probability": 0.41}, {"label": "1", "probability": 0.2}]})
    driver.find_element(By.ID, "audio-file").send_keys(str(SPEECH_SAMPLES / "1" / "gb_130_35.wav"))
    guess = wait_for(driver, "[data-testid=guess]")
    driver.save_screenshot(str(tmp_path / "unknown-guess.png"))
    assert guess.text == "Not sure it is a digit. Best guess: 7 (41.0 %)"
    assert driver.find_element(By.ID, "speech-label").text == "7?"
    assert "Why: not one of the model's words" in driver.find_element(By.CSS_SELECTOR, "[data-testid=speech-answer]").text


def test_messages_speak_to_the_page_user(both_models, browser_factory, tmp_path):
    import numpy as np
    import soundfile
    from selenium.webdriver.common.by import By

    long_clip = tmp_path / "long.wav"
    soundfile.write(long_clip, np.full(8000 * 30, 0.01, dtype=np.float32), 8000)
    driver = browser_factory()
    driver.get(both_models.url + "/")
    wait_for(driver, "#status.ready")
    driver.find_element(By.ID, "audio-file").send_keys(str(long_clip))
    error = wait_for(driver, "#speech-result .error")
    assert error.text.startswith("long.wav: the clip lasts 30.0 s, longer than the limit of ")
    assert "--" not in error.text


def test_the_header_follows_the_server_from_starting_to_gone(speech_model_path, browser_factory):
    """An app served in this process, so that the test decides when it is ready and when it goes."""
    import threading

    import uvicorn
    from selenium.webdriver.support.ui import WebDriverWait

    from inkvoice.serve.app import create_app, set_ready
    from inkvoice.serve.server import bind
    from inkvoice.serve.service import Service
    from inkvoice.serve.workers import InProcess

    service = Service(speech_model=speech_model_path)
    app = create_app(service, starting=True)
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            assert thread.is_alive()
            threading.Event().wait(0.05)
        driver = browser_factory()
        driver.get("http://127.0.0.1:%d/" % sock.getsockname()[1])
        status = lambda d: d.find_element("id", "status").text  # noqa: E731
        WebDriverWait(driver, WAIT_SECONDS).until(lambda d: status(d).startswith("Server starting"))
        set_ready(app, InProcess(service))
        WebDriverWait(driver, WAIT_SECONDS).until(lambda d: "speech: digits.npz" in status(d))
        server.should_exit = True
        thread.join()
        WebDriverWait(driver, WAIT_SECONDS).until(lambda d: status(d).startswith("Server not reachable"))
        assert "digits.npz" not in status(driver)
    finally:
        server.should_exit = True
        thread.join()
        sock.close()
        service.close()
