/* MinHash signatures in C: the same definition as minhash_kernels.py (tokens, shingles, datasketch's
 * sha1_hash32, MurmurHash3's fmix32, the affine32 permutations), with SHA-1 on the CPU's SHA extensions where it
 * has them (x86 SHA-NI: one 64-byte block in ~40 ns instead of ~150 ns of scalar code) and the permutation loop
 * compiled for AVX-512/AVX2 with a run-time choice (target_clones). Compared with datasketch and with the numba
 * kernel in tests/stages/dedup/test_minhash.py.
 *
 * Python: signatures(buf, offsets, ngram, mode, a, b, fast, out, set_values, set_offsets, want_sets) -> None
 *   buf: uint8[*] UTF-8 of every document; offsets: int64[n+1]; a, b: uint32[P]; out: uint32[n, P] (written);
 *   set_values: uint32[*], set_offsets: int64[n+1] (written when want_sets). The GIL is released.
 * has_sha_ni() -> bool: whether this CPU takes the SHA-NI path.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define HAVE_X86 1
#endif

enum { WORDS = 0, CODE = 1 };

static inline int is_word_byte(uint8_t c) {
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c >= 128;
}

static inline int is_token_byte(uint8_t c, int mode) { return is_word_byte(c) || (mode == CODE && c == '_'); }

static inline int is_space(uint8_t c) { return c == 32 || (c >= 9 && c <= 13); }

/* ---- SHA-1 ------------------------------------------------------------------------------------------------- */

static inline uint32_t rotl(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

static void sha1_block_scalar(uint32_t st[5], const uint8_t *p) {
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
        w[i] = ((uint32_t)p[4 * i] << 24) | ((uint32_t)p[4 * i + 1] << 16) | ((uint32_t)p[4 * i + 2] << 8) |
               (uint32_t)p[4 * i + 3];
    for (int i = 16; i < 80; i++) w[i] = rotl(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = st[0], b = st[1], c = st[2], d = st[3], e = st[4];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20) { f = (b & c) | (~b & d); k = 0x5A827999; }
        else if (i < 40) { f = b ^ c ^ d; k = 0x6ED9EBA1; }
        else if (i < 60) { f = (b & c) | (b & d) | (c & d); k = 0x8F1BBCDC; }
        else { f = b ^ c ^ d; k = 0xCA62C1D6; }
        uint32_t t = rotl(a, 5) + f + e + k + w[i];
        e = d; d = c; c = rotl(b, 30); b = a; a = t;
    }
    st[0] += a; st[1] += b; st[2] += c; st[3] += d; st[4] += e;
}

/* The last one or two 64-byte blocks of SHA-1's input: the bytes after the full blocks, 0x80, zeros, the bit
   length (big-endian); returns their length (64 or 128). Shared by the SHA-NI and the scalar paths. */
static size_t sha1_tail(const uint8_t *msg, size_t n, uint8_t tail[128]) {
    size_t full = n / 64, rest = n - 64 * full, len = rest + 9 <= 64 ? 64 : 128;
    memcpy(tail, msg + 64 * full, rest);
    tail[rest] = 0x80;
    memset(tail + rest + 1, 0, len - rest - 1);
    uint64_t bits = (uint64_t)n * 8;
    for (int i = 0; i < 8; i++) tail[len - 1 - i] = (uint8_t)(bits >> (8 * i));
    return len;
}

#ifdef HAVE_X86
/* One block with the SHA extensions. Lane 3 of abcd holds a, lane 3 of e holds e; a group of four rounds takes the
 * next four message words, which sha1msg1/sha1msg2 derive from the previous sixteen. */
#define SHA1_GROUP(I, F)                                                                                        \
    do {                                                                                                        \
        if ((I) >= 4)                                                                                           \
            m[(I) & 3] = _mm_sha1msg2_epu32(_mm_xor_si128(_mm_sha1msg1_epu32(m[(I) & 3], m[((I) + 1) & 3]),    \
                                                          m[((I) + 2) & 3]),                                    \
                                            m[((I) + 3) & 3]);                                                  \
        __m128i ein = (I) == 0 ? _mm_add_epi32(e, m[0]) : _mm_sha1nexte_epu32(eprev, m[(I) & 3]);              \
        eprev = abcd;                                                                                           \
        abcd = _mm_sha1rnds4_epu32(abcd, ein, F);                                                               \
    } while (0)

__attribute__((target("sha,sse4.1,ssse3"))) static void sha1_block_ni(__m128i *abcd_io, __m128i *e_io,
                                                                      const uint8_t *p) {
    const __m128i mask = _mm_set_epi64x(0x0001020304050607ULL, 0x08090a0b0c0d0e0fULL);
    __m128i abcd = *abcd_io, e = *e_io, eprev = abcd;
    const __m128i abcd0 = abcd, e0 = e;
    __m128i m[4];
    for (int i = 0; i < 4; i++) m[i] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * i)), mask);
    SHA1_GROUP(0, 0); SHA1_GROUP(1, 0); SHA1_GROUP(2, 0); SHA1_GROUP(3, 0); SHA1_GROUP(4, 0);
    SHA1_GROUP(5, 1); SHA1_GROUP(6, 1); SHA1_GROUP(7, 1); SHA1_GROUP(8, 1); SHA1_GROUP(9, 1);
    SHA1_GROUP(10, 2); SHA1_GROUP(11, 2); SHA1_GROUP(12, 2); SHA1_GROUP(13, 2); SHA1_GROUP(14, 2);
    SHA1_GROUP(15, 3); SHA1_GROUP(16, 3); SHA1_GROUP(17, 3); SHA1_GROUP(18, 3); SHA1_GROUP(19, 3);
    *e_io = _mm_sha1nexte_epu32(eprev, e0);
    *abcd_io = _mm_add_epi32(abcd, abcd0);
}

__attribute__((target("sha,sse4.1,ssse3"))) static uint32_t sha1_first_word_ni(const uint8_t *msg, size_t n) {
    __m128i abcd = _mm_set_epi32(0x67452301, (int)0xEFCDAB89, (int)0x98BADCFE, 0x10325476);
    __m128i e = _mm_set_epi32((int)0xC3D2E1F0, 0, 0, 0);
    size_t full = n / 64;
    for (size_t i = 0; i < full; i++) sha1_block_ni(&abcd, &e, msg + 64 * i);
    uint8_t tail[128];
    size_t len = sha1_tail(msg, n, tail);
    sha1_block_ni(&abcd, &e, tail);
    if (len == 128) sha1_block_ni(&abcd, &e, tail + 64);
    return (uint32_t)_mm_extract_epi32(abcd, 3);
}
#endif

static uint32_t sha1_first_word_scalar(const uint8_t *msg, size_t n) {
    uint32_t st[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    size_t full = n / 64;
    for (size_t i = 0; i < full; i++) sha1_block_scalar(st, msg + 64 * i);
    uint8_t tail[128];
    size_t len = sha1_tail(msg, n, tail);
    sha1_block_scalar(st, tail);
    if (len == 128) sha1_block_scalar(st, tail + 64);
    return st[0];
}

static int cpu_has_sha_ni(void) {
#ifdef HAVE_X86
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 19)) || !(c & (1u << 9))) return 0; /* SSE4.1, SSSE3 */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    return (b >> 29) & 1;
#else
    return 0;
#endif
}

static int use_sha_ni = -1;

/* datasketch's sha1_hash32: the digest's first 4 bytes read little-endian = SHA-1's h0 byte-swapped. */
static inline uint32_t sha1_hash32(const uint8_t *msg, size_t n) {
    uint32_t h0;
#ifdef HAVE_X86
    h0 = use_sha_ni ? sha1_first_word_ni(msg, n) : sha1_first_word_scalar(msg, n);
#else
    h0 = sha1_first_word_scalar(msg, n);
#endif
    return __builtin_bswap32(h0);
}

static inline uint32_t fnv1a32(const uint8_t *msg, size_t n) {
    uint64_t h = 0xCBF29CE484222325ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ msg[i]) * 0x100000001B3ULL;
    return (uint32_t)(h ^ (h >> 32));
}

static inline uint32_t fmix32(uint32_t h) {
    h ^= h >> 16; h *= 0x85EBCA6B; h ^= h >> 13; h *= 0xC2B2AE35; h ^= h >> 16;
    return h;
}

/* The minimum of a_k*h + b_k (mod 2^32) over the shingles, per permutation k: the hot loop once SHA-1 is cheap. */
#if defined(HAVE_X86) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
static void permute_min(const uint32_t *hv, Py_ssize_t ng, const uint32_t *a, const uint32_t *b, Py_ssize_t np_,
                        uint32_t *mins) {
    for (Py_ssize_t p = 0; p < np_; p++) mins[p] = 0xFFFFFFFFu;
    for (Py_ssize_t g = 0; g < ng; g++) {
        const uint32_t h = hv[g];
        for (Py_ssize_t p = 0; p < np_; p++) {
            uint32_t v = a[p] * h + b[p];
            mins[p] = v < mins[p] ? v : mins[p];
        }
    }
}

/* ---- one batch of documents ------------------------------------------------------------------------------- */

typedef struct {
    const uint8_t *buf;
    const int64_t *offsets;
    Py_ssize_t n_docs, n_perm;
    int ngram, mode, fast, want_sets;
    const uint32_t *a, *b;
    uint32_t *out, *set_values;
    int64_t *set_offsets;
} job_t;

static int run(const job_t *j) {
    Py_ssize_t max_len = 1;
    for (Py_ssize_t d = 0; d < j->n_docs; d++) {
        Py_ssize_t len = (Py_ssize_t)(j->offsets[d + 1] - j->offsets[d]);
        if (len > max_len) max_len = len;
    }
    /* The normalised document: its tokens joined by single spaces (never longer than 2 x the text), and each
     * token's start and end in it; a shingle is then one contiguous slice. */
    uint8_t *norm = malloc((size_t)(2 * max_len + 2));
    int64_t *ts = malloc(sizeof(int64_t) * (size_t)(max_len + 2));
    int64_t *te = malloc(sizeof(int64_t) * (size_t)(max_len + 2));
    uint32_t *hv = malloc(sizeof(uint32_t) * (size_t)(max_len + 2));
    if (!norm || !ts || !te || !hv) {
        free(norm); free(ts); free(te); free(hv);
        return -1;
    }
    int64_t pos = 0;
    for (Py_ssize_t d = 0; d < j->n_docs; d++) {
        const uint8_t *s = j->buf + j->offsets[d];
        const Py_ssize_t len = (Py_ssize_t)(j->offsets[d + 1] - j->offsets[d]);
        Py_ssize_t nt = 0, w = 0, i = 0;
        while (i < len) {
            uint8_t c = s[i];
            if (is_token_byte(c, j->mode)) {
                Py_ssize_t k = i + 1;
                while (k < len && is_token_byte(s[k], j->mode)) k++;
                if (nt) norm[w++] = ' ';
                ts[nt] = w;
                memcpy(norm + w, s + i, (size_t)(k - i));
                w += k - i;
                te[nt++] = w;
                i = k;
            } else {
                if (j->mode == CODE && !is_space(c)) {
                    if (nt) norm[w++] = ' ';
                    ts[nt] = w;
                    norm[w++] = c;
                    te[nt++] = w;
                }
                i++;
            }
        }
        Py_ssize_t ng = 0;
        if (nt) {
            Py_ssize_t width = nt >= j->ngram ? j->ngram : nt;
            ng = nt >= j->ngram ? nt - j->ngram + 1 : 1;
            for (Py_ssize_t g = 0; g < ng; g++) {
                const uint8_t *m = norm + ts[g];
                size_t n = (size_t)(te[g + width - 1] - ts[g]);
                hv[g] = j->fast ? fnv1a32(m, n) : sha1_hash32(m, n);
            }
        }
        if (j->want_sets) {
            memcpy(j->set_values + pos, hv, sizeof(uint32_t) * (size_t)ng);
            pos += ng;
            j->set_offsets[d + 1] = pos;
        }
        for (Py_ssize_t g = 0; g < ng; g++) hv[g] = fmix32(hv[g]);
        permute_min(hv, ng, j->a, j->b, j->n_perm, j->out + d * j->n_perm);
    }
    free(norm); free(ts); free(te); free(hv);
    return 0;
}

/* ---- Python glue -------------------------------------------------------------------------------------------- */

static int get(PyObject *o, Py_buffer *v, int writable, Py_ssize_t itemsize, const char *name) {
    if (PyObject_GetBuffer(o, v, PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0)) < 0) return -1;
    if (v->itemsize != itemsize) {
        PyErr_Format(PyExc_TypeError, "%s: expected items of %zd bytes, got %zd", name, itemsize, v->itemsize);
        PyBuffer_Release(v);
        return -1;
    }
    return 0;
}

static PyObject *py_signatures(PyObject *self, PyObject *args) {
    PyObject *o_buf, *o_off, *o_a, *o_b, *o_out, *o_sv, *o_so;
    int ngram, mode, fast, want_sets;
    if (!PyArg_ParseTuple(args, "OOiiOOpOOOp", &o_buf, &o_off, &ngram, &mode, &o_a, &o_b, &fast, &o_out, &o_sv,
                          &o_so, &want_sets))
        return NULL;
    Py_buffer vb[7];
    PyObject *objs[7] = {o_buf, o_off, o_a, o_b, o_out, o_sv, o_so};
    const int writable[7] = {0, 0, 0, 0, 1, 1, 1};
    const Py_ssize_t sizes[7] = {1, 8, 4, 4, 4, 4, 8};
    const char *names[7] = {"buf", "offsets", "a", "b", "out", "set_values", "set_offsets"};
    int got = 0;
    for (; got < 7; got++)
        if (get(objs[got], &vb[got], writable[got], sizes[got], names[got]) < 0) break;
    PyObject *result = NULL;
    if (got == 7) {
        job_t j = {vb[0].buf, vb[1].buf, vb[1].len / 8 - 1, vb[2].len / 4, ngram, mode, fast, want_sets,
                   vb[2].buf, vb[3].buf, vb[4].buf, vb[5].buf, vb[6].buf};
        if (j.n_docs < 0 || vb[3].len != vb[2].len || vb[4].len < j.n_docs * j.n_perm * 4 || ngram < 1) {
            PyErr_SetString(PyExc_ValueError, "signatures: inconsistent array sizes");
        } else {
            int rc;
            Py_BEGIN_ALLOW_THREADS
            rc = run(&j);
            Py_END_ALLOW_THREADS
            if (rc) PyErr_NoMemory();
            else result = Py_NewRef(Py_None);
        }
    }
    for (int i = 0; i < got; i++) PyBuffer_Release(&vb[i]);
    return result;
}

static PyObject *py_has_sha_ni(PyObject *self, PyObject *noargs) { return PyBool_FromLong(use_sha_ni); }

static PyObject *py_sha1_hash32(PyObject *self, PyObject *arg) {
    Py_buffer v;
    if (PyObject_GetBuffer(arg, &v, PyBUF_SIMPLE) < 0) return NULL;
    uint32_t h = sha1_hash32(v.buf, (size_t)v.len);
    PyBuffer_Release(&v);
    return PyLong_FromUnsignedLong(h);
}

static PyMethodDef methods[] = {
    {"signatures", py_signatures, METH_VARARGS, "MinHash signatures of a packed batch (see the module header)."},
    {"has_sha_ni", py_has_sha_ni, METH_NOARGS, "Whether SHA-1 runs on the CPU's SHA extensions."},
    {"sha1_hash32", py_sha1_hash32, METH_O, "datasketch's sha1_hash32 of a bytes-like object."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_minhash_c", NULL, -1, methods};

PyMODINIT_FUNC PyInit__minhash_c(void) {
    use_sha_ni = cpu_has_sha_ni() && getenv("SWALLOW_MINHASH_NO_SHA_NI") == NULL;
    return PyModule_Create(&module);
}
