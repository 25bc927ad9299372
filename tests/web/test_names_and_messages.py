"""What users see of names and refusals: file names kept as typed, messages that list what works."""

from __future__ import annotations

from web import users
from web.exports import stem
from web.uploads import UploadRejected, classify, clean_filename
from web.views.media import content_disposition


def test_a_file_name_is_kept_as_typed_unless_it_is_a_path():
    assert clean_filename("<script>alert(1)</script>.mp4") == "<script>alert(1)</script>.mp4"
    assert clean_filename("C:\\Users\\cam\\door 1.mp4") == "door 1.mp4"
    assert clean_filename("../../etc/passwd") == "etc/passwd"
    assert clean_filename("cams/door 1.mp4") == "cams/door 1.mp4"  # a folder upload says where from
    assert clean_filename("/tmp/x.mp4") == "x.mp4"
    assert clean_filename("a\x00b.mp4") == "ab.mp4"
    assert clean_filename("") == "upload"


def test_the_unsupported_type_message_names_every_accepted_image_type():
    try:
        classify(b"%PDF-1.7 not a video at all" + b"\0" * 300)
    except UploadRejected as e:
        message = str(e)
    else:
        raise AssertionError("a PDF was accepted")
    for name in ("MP4", "WebM", "JPEG", "PNG", "WebP", "BMP", "TIFF"):
        assert name in message


def test_download_names_keep_letters_of_any_script():
    assert stem({"filename": "Café Überwachung – Kasse 2.mp4"}) == "Café_Überwachung_Kasse_2"
    assert stem({"filename": "監視カメラ.mp4"}) == "監視カメラ"
    assert stem({"filename": "<script>x</script>.mp4"}) == "script_x_script"
    header = content_disposition("Café.frames.csv")
    assert 'filename="Caf_.frames.csv"' in header and "filename*=UTF-8''Caf%C3%A9.frames.csv" in header


def test_csv_exports_carry_the_utf8_name(client, alice, video, mongo):
    from tests.web.test_api import bearer

    mongo.jobs.update_one({"_id": video["_id"]}, {"$set": {"filename": "Überwachung.mp4"}})
    try:
        token, _ = users.create_token(alice.id, "names")
        resp = client.get(f"/api/v1/clips/{video['_id']}/download/frames.csv", headers=bearer(token))
        assert resp.status_code == 200
        assert "filename*=UTF-8''%C3%9Cberwachung.frames.csv" in resp.headers["Content-Disposition"]
    finally:
        mongo.jobs.update_one({"_id": video["_id"]}, {"$set": {"filename": video["filename"]}})


def test_explanation_of_a_person_who_does_not_exist_is_404_both_ways(client, alice, video):
    from tests.web.test_api import bearer

    token, _ = users.create_token(alice.id, "explain")
    url = f"/api/v1/clips/{video['_id']}/persons/99999/explanation"
    assert client.get(url, headers=bearer(token)).status_code == 404
    assert client.post(url, headers=bearer(token)).status_code == 404
