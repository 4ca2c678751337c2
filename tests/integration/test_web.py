"""The web page in headless Chromium (Debian's chromium, chromium-driver
and python3-selenium): log in, read a message that arrived by SMTP, send
one that another user receives over IMAP, see a new message appear without
reloading, at desktop and phone width. Screenshots are saved under
build/screenshots/ for a person to look at."""
import imaplib
import os
import shutil
import smtplib
import sys
import time
import unittest

from roosttest import RoostServer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SHOTS = os.path.join(ROOT, "build", "screenshots")
CHROMIUM = shutil.which("chromium")
DRIVER = shutil.which("chromedriver")

# Debian's python3-selenium lives outside a virtualenv's or pyenv's path.
if "/usr/lib/python3/dist-packages" not in sys.path:
    sys.path.append("/usr/lib/python3/dist-packages")
try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:
    webdriver = None

HTML_MSG = (b"From: Bob <bob@example.org>\r\nTo: alice@example.org\r\n"
            b"Subject: Lunch on Friday\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/alternative; boundary=b\r\n\r\n"
            b"--b\r\nContent-Type: text/plain\r\n\r\nShall we meet at noon?\r\n"
            b"--b\r\nContent-Type: text/html\r\n\r\n<p>Shall we meet at <b>noon</b>?</p>"
            b"<img src=\"http://127.0.0.1:9/track.png\">\r\n--b--\r\n")


@unittest.skipIf(webdriver is None or CHROMIUM is None or DRIVER is None,
                 "chromium, chromium-driver or python3-selenium not installed")
class TestWebPage(unittest.TestCase):
    def setUp(self):
        os.makedirs(SHOTS, exist_ok=True)
        self.srv = RoostServer(listeners=("http", "smtp", "imap"))
        self.srv.start()
        self.addCleanup(self.srv.stop)
        self.base = "http://127.0.0.1:%d/" % self.srv.port("http")

    def browser(self, width, height):
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--window-size=%d,%d" % (width, height)):
            opts.add_argument(a)
        d = webdriver.Chrome(service=Service(DRIVER), options=opts)
        self.addCleanup(d.quit)
        return d

    def deliver(self, msg):
        with smtplib.SMTP("127.0.0.1", self.srv.port("smtp"), timeout=20) as s:
            s.sendmail("bob@example.org", ["alice@example.org"], msg)

    def shot(self, d, name):
        d.save_screenshot(os.path.join(SHOTS, "web-%s.png" % name))

    def login(self, d):
        wait = WebDriverWait(d, 30)
        d.get(self.base)
        wait.until(EC.visibility_of_element_located((By.ID, "login-user")))
        self.shot(d, "login")
        d.find_element(By.ID, "login-user").send_keys("alice@example.org")
        d.find_element(By.ID, "login-pass").send_keys("alice-secret", Keys.ENTER)
        wait.until(EC.visibility_of_element_located((By.ID, "message-list")))
        return wait

    def test_read_send_live(self):
        self.deliver(HTML_MSG)
        d = self.browser(1280, 800)
        wait = self.login(d)
        item = wait.until(EC.element_to_be_clickable(
            (By.XPATH, "//ul[@id='message-list']/li[contains(., 'Lunch on Friday')]")))
        inbox = d.find_element(By.XPATH, "//ul[@id='folder-list']/li[contains(., 'Inbox')]")
        self.assertIn("1", inbox.text)  # unread count
        item.click()
        wait.until(EC.text_to_be_present_in_element((By.ID, "r-subject"), "Lunch on Friday"))
        # the HTML part, in a sandboxed frame, remote image blocked
        frame = d.find_element(By.CSS_SELECTOR, "#r-body iframe")
        self.assertEqual(frame.get_attribute("sandbox"), "allow-popups allow-popups-to-escape-sandbox")
        self.assertTrue(d.find_element(By.ID, "r-remote").is_displayed())
        d.switch_to.frame(frame)
        self.assertIn("Shall we meet at noon?", d.find_element(By.TAG_NAME, "body").text)
        d.switch_to.default_content()
        wait.until(lambda _: "unread" not in d.find_element(
            By.XPATH, "//ul[@id='message-list']/li[1]").get_attribute("class"))
        self.shot(d, "reading")

        # reply from the keyboard: r opens the composer, then send to bob
        d.find_element(By.TAG_NAME, "body").send_keys("r")
        wait.until(EC.visibility_of_element_located((By.ID, "c-body")))
        self.assertEqual(d.find_element(By.ID, "c-subject").get_attribute("value"),
                         "Re: Lunch on Friday")
        d.find_element(By.ID, "c-body").send_keys("Noon works for me.")
        self.shot(d, "compose")
        d.find_element(By.ID, "c-send").click()
        wait.until(EC.invisibility_of_element_located((By.ID, "c-body")))
        self.assertEqual(d.find_element(By.ID, "c-error").text, "")

        m = imaplib.IMAP4("127.0.0.1", self.srv.port("imap"), timeout=20)
        self.addCleanup(m.logout)
        m.login("bob@example.org", "bob-secret")
        m.select("INBOX")
        typ, data = m.search(None, "SUBJECT", '"Re: Lunch on Friday"')
        self.assertEqual(data, [b"1"])
        typ, data = m.fetch("1", "(BODY[TEXT])")
        self.assertIn(b"Noon works for me.", data[0][1])

        # a new message shows up without reloading (EventSource)
        wait.until(lambda _: "on" in d.find_element(By.ID, "live").get_attribute("class"))
        self.deliver(b"From: Carol <carol@example.org>\r\nTo: alice@example.org\r\n"
                     b"Subject: Live update\r\n\r\nPushed.\r\n")
        wait.until(EC.presence_of_element_located(
            (By.XPATH, "//ul[@id='message-list']/li[contains(., 'Live update')]")))
        self.shot(d, "live")

        # search, then move to Archive
        box = d.find_element(By.ID, "search")
        box.send_keys("Pushed", Keys.ENTER)
        wait.until(EC.text_to_be_present_in_element((By.ID, "list-title"), "Search: Pushed"))
        wait.until(lambda _: len(d.find_elements(By.CSS_SELECTOR, "#message-list li")) == 1 and
                   "Live update" in d.find_element(By.ID, "message-list").text)
        self.shot(d, "search")

    def test_phone_width(self):
        self.deliver(HTML_MSG)
        d = self.browser(390, 844)
        wait = self.login(d)
        item = wait.until(EC.element_to_be_clickable(
            (By.XPATH, "//ul[@id='message-list']/li[contains(., 'Lunch on Friday')]")))
        # one pane at a time: the folders are behind the menu button
        self.assertFalse(d.find_element(By.ID, "folders").is_displayed())
        self.shot(d, "phone-list")
        item.click()
        wait.until(EC.text_to_be_present_in_element((By.ID, "r-subject"), "Lunch on Friday"))
        self.assertFalse(d.find_element(By.ID, "list-pane").is_displayed())
        self.shot(d, "phone-reading")
        d.find_element(By.ID, "back-btn").click()
        wait.until(EC.visibility_of_element_located((By.ID, "list-pane")))
        d.find_element(By.ID, "menu-toggle").click()
        wait.until(EC.visibility_of_element_located((By.ID, "folders")))
        self.shot(d, "phone-folders")


if __name__ == "__main__":
    unittest.main()
