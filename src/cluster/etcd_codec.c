/* etcd_codec.c: etcd's messages as the JSON gateway writes them.
 *
 * The gateway follows protobuf's JSON mapping: bytes fields (keys, values)
 * are base64, int64 fields are decimal strings, and a field holding its zero
 * value (0, false, "", empty list) is left out entirely. So every reader
 * here takes "missing" as zero, and reads integers from strings with
 * strtoll/strtoull, never through a double. Nothing here does I/O. */
#include "cluster/etcd_internal.h"

#include <errno.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

bool etcd_buf_add(struct etcd_buf *b, const void *data, size_t n)
{
	if (b->len + n + 1 > ETCD_REPLY_MAX) {
		b->too_big = true;
		return false;
	}
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 1024;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (!p)
			return false;
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, data, n);
	b->len += n;
	b->p[b->len] = '\0';
	return true;
}

void etcd_buf_free(struct etcd_buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

/* ---- base64 ---------------------------------------------------------------- */

char *etcd_b64_encode(const void *p, size_t n)
{
	/* EVP_EncodeBlock takes an int count and writes 4 characters per 3
	 * bytes (padded), then a NUL. */
	if (n > (size_t)INT_MAX / 4 * 3 - 3)
		return NULL;
	char *out = malloc((n + 2) / 3 * 4 + 1);
	if (!out)
		return NULL;
	if (n == 0) {
		out[0] = '\0';
		return out;
	}
	EVP_EncodeBlock((unsigned char *)out, p, (int)n);
	return out;
}

int etcd_b64_decode(const char *s, size_t len, char **out, size_t *out_len)
{
	*out = NULL;
	*out_len = 0;
	/* EVP_DecodeBlock wants whole 4-character groups and counts the bytes
	 * of the padding ("=") as output (zeros): take them back off. It also
	 * skips leading and trailing whitespace, which etcd never sends. */
	if (len % 4 || len > (size_t)INT_MAX)
		return -EINVAL;
	size_t pad = 0;
	if (len && s[len - 1] == '=')
		pad++;
	if (len > 1 && s[len - 2] == '=')
		pad++;
	for (size_t i = 0; i < len - pad; i++)
		if (s[i] == '=')
			return -EINVAL;
	char *buf = malloc(len / 4 * 3 + 1);
	if (!buf)
		return -ENOMEM;
	int n = 0;
	if (len) {
		n = EVP_DecodeBlock((unsigned char *)buf, (const unsigned char *)s, (int)len);
		if (n < 0 || (size_t)n != len / 4 * 3) {
			free(buf);
			return -EINVAL;
		}
	}
	*out_len = (size_t)n - pad;
	buf[*out_len] = '\0';
	*out = buf;
	return 0;
}

/* ---- writing ----------------------------------------------------------- */

static int set_new(json_t *obj, const char *name, json_t *v)
{
	/* json_object_set_new takes the reference even when it fails. */
	if (!v || json_object_set_new(obj, name, v) < 0)
		return -ENOMEM;
	return 0;
}

int etcd_json_set_bytes(json_t *obj, const char *name, const void *p, size_t n)
{
	char *s = etcd_b64_encode(p, n);
	if (!s)
		return -ENOMEM;
	int rc = set_new(obj, name, json_string(s));
	free(s);
	return rc;
}

int etcd_json_set_i64(json_t *obj, const char *name, int64_t v)
{
	return set_new(obj, name, json_integer((json_int_t)v));
}

int etcd_json_set_range(json_t *obj, const char *key, bool prefix)
{
	size_t len = strlen(key);
	if (!prefix)
		return etcd_json_set_bytes(obj, "key", key, len);
	/* Everything: etcd spells it key "\0", range_end "\0". */
	if (len == 0) {
		int rc = etcd_json_set_bytes(obj, "key", "", 1);
		return rc ? rc : etcd_json_set_bytes(obj, "range_end", "", 1);
	}
	char *end = malloc(len);
	if (!end)
		return -ENOMEM;
	size_t elen = etcd_prefix_end(key, len, end);
	int rc = etcd_json_set_bytes(obj, "key", key, len);
	if (!rc)
		rc = etcd_json_set_bytes(obj, "range_end", end, elen);
	free(end);
	return rc;
}

size_t etcd_prefix_end(const char *prefix, size_t plen, char *out)
{
	size_t n = plen;
	while (n && (unsigned char)prefix[n - 1] == 0xff)
		n--;
	if (!n) {
		out[0] = '\0';
		return 1;
	}
	memcpy(out, prefix, n);
	out[n - 1] = (char)((unsigned char)out[n - 1] + 1);
	return n;
}

/* ---- reading ----------------------------------------------------------- */

int etcd_json_i64(const json_t *obj, const char *name, int64_t *out)
{
	const json_t *v = json_object_get(obj, name);
	*out = 0;
	if (!v || json_is_null(v))
		return 0;
	if (json_is_integer(v)) {
		*out = (int64_t)json_integer_value(v);
		return 0;
	}
	if (!json_is_string(v))
		return -EPROTO;
	const char *s = json_string_value(v);
	char *end;
	errno = 0;
	long long x = strtoll(s, &end, 10);
	if (errno || end == s || *end)
		return -EPROTO;
	*out = (int64_t)x;
	return 0;
}

int etcd_json_u64(const json_t *obj, const char *name, uint64_t *out)
{
	const json_t *v = json_object_get(obj, name);
	*out = 0;
	if (!v || json_is_null(v))
		return 0;
	if (json_is_integer(v)) {
		if (json_integer_value(v) < 0)
			return -EPROTO;
		*out = (uint64_t)json_integer_value(v);
		return 0;
	}
	if (!json_is_string(v))
		return -EPROTO;
	const char *s = json_string_value(v);
	char *end;
	errno = 0;
	unsigned long long x = strtoull(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-')
		return -EPROTO;
	*out = (uint64_t)x;
	return 0;
}

int etcd_json_bytes(const json_t *obj, const char *name, char **out, size_t *len)
{
	const json_t *v = json_object_get(obj, name);
	if (!v || json_is_null(v))
		return etcd_b64_decode("", 0, out, len);
	if (!json_is_string(v)) {
		*out = NULL;
		*len = 0;
		return -EPROTO;
	}
	int rc = etcd_b64_decode(json_string_value(v), json_string_length(v), out, len);
	return rc == -EINVAL ? -EPROTO : rc;
}

bool etcd_json_true(const json_t *obj, const char *name)
{
	return json_is_true(json_object_get(obj, name));
}

int64_t etcd_header_revision(const json_t *reply)
{
	int64_t rev;
	if (etcd_json_i64(json_object_get(reply, "header"), "revision", &rev) < 0)
		return 0;
	return rev;
}

int etcd_kv_from_json(const json_t *j, struct etcd_kv *kv, struct error *err)
{
	static const char *const ints[] = {
		"create_revision", "mod_revision", "version", "lease",
	};
	int64_t *const dst[] = {
		&kv->create_revision, &kv->mod_revision, &kv->version, &kv->lease,
	};
	size_t klen;
	int rc;

	memset(kv, 0, sizeof(*kv));
	if (!json_is_object(j))
		return error_set(err, EPROTO, "a key-value is not a JSON object");
	rc = etcd_json_bytes(j, "key", &kv->key, &klen);
	if (rc < 0)
		goto bad_key;
	rc = etcd_json_bytes(j, "value", &kv->value, &kv->value_len);
	if (rc < 0) {
		etcd_kv_free(kv);
		return rc == -ENOMEM ? error_set(err, ENOMEM, "out of memory for a value")
			: error_set(err, EPROTO, "\"value\" is not base64");
	}
	for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
		if (etcd_json_i64(j, ints[i], dst[i]) < 0) {
			etcd_kv_free(kv);
			return error_set(err, EPROTO, "\"%s\" is not an integer", ints[i]);
		}
	}
	return 0;

bad_key:
	etcd_kv_free(kv);
	return rc == -ENOMEM ? error_set(err, ENOMEM, "out of memory for a key")
		: error_set(err, EPROTO, "\"key\" is not base64");
}

int etcd_kvs_append_json(const json_t *arr, struct etcd_kv **kvs, size_t *n, struct error *err)
{
	if (!arr)
		return 0;
	if (!json_is_array(arr))
		return error_set(err, EPROTO, "\"kvs\" is not a list");
	size_t add = json_array_size(arr);
	if (!add)
		return 0;
	struct etcd_kv *grown = realloc(*kvs, (*n + add) * sizeof(**kvs));
	if (!grown)
		return error_set(err, ENOMEM, "out of memory for %zu key-values", *n + add);
	*kvs = grown;
	for (size_t i = 0; i < add; i++) {
		int rc = etcd_kv_from_json(json_array_get(arr, i), &grown[*n], err);
		if (rc < 0)
			return error_wrap(err, "key-value %zu", *n);
		(*n)++;
	}
	return 0;
}

void etcd_kv_free(struct etcd_kv *kv)
{
	if (!kv)
		return;
	free(kv->key);
	free(kv->value);
	memset(kv, 0, sizeof(*kv));
}

void etcd_kvs_free(struct etcd_kv *kvs, size_t n)
{
	if (!kvs)
		return;
	for (size_t i = 0; i < n; i++)
		etcd_kv_free(&kvs[i]);
	free(kvs);
}

/* ---- time ---------------------------------------------------------------- */

void etcd_sleep_ms(int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

int64_t etcd_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
