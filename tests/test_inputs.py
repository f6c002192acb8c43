"""Input images from a path or URL: every failure is a ValueError naming the setting."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from common import closed_port, huge_png, png_bytes
from PIL import Image, ImageFile

from helpers.inputs import MAX_PIXELS, check_size, local_path, open_image, opened, read_rgb


@pytest.fixture
def never_decode(monkeypatch):
    """Fail the test if any pixel data is decoded."""
    def refuse(self):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


# --- local files ----------------------------------------------------------------------------


def test_a_small_png_from_the_huge_png_helper_decodes(tmp_path):
    """The premise of the size tests: the helper's files are valid, so only size refuses."""
    image = read_rgb(huge_png(tmp_path / "small.png", 9, 5), "init_image")
    assert image.size == (9, 5)
    assert set(image.getdata()) == {(0, 0, 0)}


@pytest.mark.parametrize(("mode", "color"), [("L", 77), ("RGBA", (1, 2, 3, 128)), ("P", 5),
                                             ("RGB", (200, 30, 90))])
def test_read_rgb_gives_an_rgb_image_of_the_file(tmp_path, mode, color):
    path = tmp_path / "start.png"
    path.write_bytes(png_bytes((7, 3), color, mode))
    image = read_rgb(path, "init_image")
    assert image.mode == "RGB"
    assert image.size == (7, 3)
    with Image.open(path) as plain:  # Pillow's own reading of the file (its palette, if any)
        assert image.getpixel((0, 0)) == plain.convert("RGB").getpixel((0, 0))


def test_read_rgb_accepts_a_str_path(tmp_path):
    path = tmp_path / "start.png"
    path.write_bytes(png_bytes())
    assert read_rgb(str(path), "init_image").getpixel((5, 3)) == (200, 30, 90)


def test_missing_file_is_named_with_the_field(tmp_path):
    with pytest.raises(ValueError, match=r"^init_image: .*nothing\.png not found$"):
        read_rgb(tmp_path / "nothing.png", "init_image")


def test_folder_is_not_an_image(tmp_path):
    with pytest.raises(ValueError, match=r"^image_prompts: .* is a folder, not an image$"):
        read_rgb(tmp_path, "image_prompts")


def test_file_that_is_not_an_image_is_refused(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("just some words\n")
    with pytest.raises(ValueError, match=r"^init_image: cannot read .*notes\.png as an image \("):
        read_rgb(path, "init_image")


def test_truncated_image_is_refused_when_decoded(tmp_path):
    path = tmp_path / "cut.png"
    path.write_bytes(png_bytes((64, 64))[:60])  # the header is whole, the pixels are not
    with opened(path, "init_image") as image:
        assert image.size == (64, 64)
    with pytest.raises(ValueError, match=r"^init_image: cannot read .*cut\.png as an image"):
        read_rgb(path, "init_image")


def test_too_large_image_is_refused_from_its_header(tmp_path, never_decode):
    path = huge_png(tmp_path / "huge.png")
    assert MAX_PIXELS < 10_000 * 10_000  # the premise: just above the limit
    assert path.stat().st_size < 100_000
    with pytest.raises(ValueError, match=r"^init_image: .*huge\.png is 10000x10000 pixels "
                                         r"\(100 megapixels\), more than the 89 megapixels"):
        read_rgb(path, "init_image")


def test_image_beyond_pillows_own_bomb_limit_still_tells_its_size(tmp_path, never_decode):
    path = huge_png(tmp_path / "bomb.png", 2 * 9_500, 9_500)  # Pillow alone refuses
    limit = Image.MAX_IMAGE_PIXELS
    with pytest.raises(ValueError, match=r"^image_prompts: .* is 19000x9500 pixels"):
        read_rgb(path, "image_prompts")
    assert limit == Image.MAX_IMAGE_PIXELS  # Pillow's own check is back for everyone else


def test_opened_reads_only_the_header_of_a_huge_image(tmp_path, never_decode):
    path = huge_png(tmp_path / "huge.png")
    with opened(path, "image") as image:
        assert image.size == (10_000, 10_000)
        assert image.mode == "1"


def test_opened_raises_for_a_missing_file_before_opening(tmp_path):
    with pytest.raises(ValueError, match=r"^image: .* not found$"), \
            opened(tmp_path / "gone.png", "image"):
        pass


@pytest.mark.parametrize(("size", "too_big"), [((MAX_PIXELS, 1), False),
                                               ((MAX_PIXELS + 1, 1), True),
                                               ((9459, 9459), False),
                                               ((9460, 9460), True)])
def test_check_size_refuses_only_above_max_pixels(size, too_big):
    image = SimpleNamespace(size=size)
    if too_big:
        with pytest.raises(ValueError, match=r"^init_image: big\.png is \d+x\d+ pixels"):
            check_size(image, "big.png", "init_image")
    else:
        check_size(image, "big.png", "init_image")


# --- local_path and open_image --------------------------------------------------------------


def test_local_path_returns_an_existing_file_as_it_is(tmp_path):
    path = tmp_path / "start.png"
    path.write_bytes(png_bytes())
    assert local_path(str(path), "init_image") == path


def test_local_path_expands_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "start.png").write_bytes(png_bytes())
    assert local_path("~/start.png", "init_image") == tmp_path / "start.png"


@pytest.mark.parametrize("name", ["missing.png", "missing"])
def test_local_path_of_a_missing_file_names_the_field_and_the_spec(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=rf"^init_image: file not found: '{name}'$"):
        local_path(name, "init_image")


def test_local_path_of_a_missing_absolute_path(tmp_path):
    spec = str(tmp_path / "inits" / "start.png")
    with pytest.raises(ValueError, match=r"^init_image: file not found: "):
        local_path(spec, "init_image")


def test_local_path_of_a_missing_relative_path_in_a_folder_is_not_found(tmp_path, monkeypatch):
    import helpers.download

    def no_fetch(*args, **kwargs):
        raise AssertionError(f"a local path was fetched as {args[0]}")

    monkeypatch.setattr(helpers.download, "fetch_file_from", no_fetch)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"^init_image: file not found: 'inits/start\.png'$"):
        local_path("inits/start.png", "init_image", cache=tmp_path / "cache")


def test_open_image_of_a_local_file_is_rgb(tmp_path):
    path = tmp_path / "grey.png"
    path.write_bytes(png_bytes((5, 5), 128, "L"))
    image = open_image(str(path), "init_image")
    assert image.mode == "RGB"
    assert image.getpixel((2, 2)) == (128, 128, 128)


def test_open_image_of_a_folder_names_the_field(tmp_path):
    with pytest.raises(ValueError, match=r"^image_prompts: .* is a folder, not an image$"):
        open_image(str(tmp_path), "image_prompts")


def test_open_image_of_a_url_is_fetched_into_the_cache(httpserver, tmp_path):
    httpserver.expect_request("/art/start.png").respond_with_data(png_bytes(),
                                                                  content_type="image/png")
    image = open_image(httpserver.url_for("/art/start.png"), "init_image", cache=tmp_path)
    assert image.mode == "RGB"
    assert image.size == (6, 4)
    assert image.getpixel((0, 0)) == (200, 30, 90)
    assert (tmp_path / "inputs" / "start.png").read_bytes() == png_bytes()


def test_a_url_is_fetched_only_once(httpserver, tmp_path):
    httpserver.expect_request("/start.png").respond_with_data(png_bytes(),
                                                              content_type="image/png")
    url = httpserver.url_for("/start.png")
    first = local_path(url, "init_image", cache=tmp_path)
    requests = len(httpserver.log)
    assert local_path(url, "init_image", cache=tmp_path) == first
    assert len(httpserver.log) == requests


def test_two_urls_with_the_same_file_name_give_their_own_images(httpserver, tmp_path):
    for folder, color in (("a", (10, 10, 10)), ("b", (90, 90, 90))):
        httpserver.expect_request(f"/{folder}/start.png").respond_with_data(
            png_bytes(color=color), content_type="image/png")
    a, b = (httpserver.url_for(f"/{folder}/start.png") for folder in "ab")
    assert open_image(a, "init_image", cache=tmp_path).getpixel((0, 0)) == (10, 10, 10)
    assert open_image(b, "init_image", cache=tmp_path).getpixel((0, 0)) == (90, 90, 90)
    assert open_image(a, "init_image", cache=tmp_path).getpixel((0, 0)) == (10, 10, 10)


def test_url_answering_404_could_not_be_fetched(httpserver, tmp_path):
    httpserver.expect_request("/gone.png").respond_with_data("no such file", status=404)
    url = httpserver.url_for("/gone.png")
    with pytest.raises(ValueError) as error:
        open_image(url, "image_prompts", cache=tmp_path)
    assert str(error.value) == f"image_prompts: could not fetch {url} (HTTP 404 Not Found)"
    assert not (tmp_path / "inputs" / "gone.png").exists()


def test_url_on_a_closed_port_could_not_be_fetched(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/start.png"
    with pytest.raises(ValueError) as error:
        open_image(url, "init_image", cache=tmp_path)
    assert str(error.value) == f"init_image: could not fetch {url} (connection refused)"


def test_url_serving_something_else_than_an_image_is_refused(httpserver, tmp_path):
    httpserver.expect_request("/words.png").respond_with_data("hello there",
                                                              content_type="text/plain")
    with pytest.raises(ValueError, match=r"^init_image: cannot read .*words\.png as an image"):
        open_image(httpserver.url_for("/words.png"), "init_image", cache=tmp_path)
