"""Reads and writes values through django-redis the way PostHog's Django side does.

django-redis pickles every value with the highest protocol and hands it to the
configured compressor; the compressor below follows PostHog's settings: zstd at level
0 (the library default) for pickles longer than 512 bytes, and a tolerant read that
returns what it cannot decompress as it is.

usage: django_cache.py REDIS_URL get KEY...        prints one JSON line per key
       django_cache.py REDIS_URL set KEY FILE      stores FILE's text under KEY
"""
import hashlib
import json
import sys

import django
from django.conf import settings
import zstd
from django_redis.compressors.base import BaseCompressor


class ZstdCompressor(BaseCompressor):
    min_length = 512

    def compress(self, value):
        if len(value) > self.min_length:
            return zstd.compress(value, 0, 1)
        return value

    def decompress(self, value):
        try:
            return zstd.decompress(value)
        except zstd.Error:
            return value


def main():
    url, op, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    settings.configure(
        CACHES={
            "default": {
                "BACKEND": "django_redis.cache.RedisCache",
                "LOCATION": url,
                "KEY_PREFIX": "posthog",
                "OPTIONS": {"COMPRESSOR": "__main__.ZstdCompressor"},
            }
        }
    )
    django.setup()
    from django.core.cache import cache

    if op == "get":
        for key in args:
            try:
                value = cache.get(key)
            except Exception as e:  # the reader's own failure is the result
                print(json.dumps({"key": key, "error": "%s: %s" % (type(e).__name__, e)}))
                continue
            if value is None:
                print(json.dumps({"key": key, "missing": True}))
            elif not isinstance(value, str):
                print(json.dumps({"key": key, "error": "not a str: %s" % type(value).__name__}))
            else:
                data = value.encode("utf-8")
                print(json.dumps({"key": key, "len": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                                  "head": value[:200]}))
    elif op == "set":
        key, path = args
        with open(path, encoding="utf-8") as f:
            cache.set(key, f.read(), None)
    else:
        sys.exit("unknown op " + op)


if __name__ == "__main__":
    main()
