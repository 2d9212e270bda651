#ifndef HERALD_COPENSSL_SHIM_H
#define HERALD_COPENSSL_SHIM_H

// Only the OpenSSL 3 API: the deprecated HMAC_CTX functions stay hidden.
#define OPENSSL_API_COMPAT 30000
#define OPENSSL_NO_DEPRECATED 1

#include <stddef.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

// The HMAC algorithm is fetched from the provider once per process; fetching costs more
// than a whole HMAC over a 1 KB body. (A function-local static: Swift's importer emits
// inline functions but not file-scope statics.)
static inline EVP_MAC *herald_hmac_algorithm(void) {
    static EVP_MAC *cached = NULL;
    EVP_MAC *mac = __atomic_load_n(&cached, __ATOMIC_ACQUIRE);
    if (mac != NULL) return mac;
    EVP_MAC *fetched = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (fetched == NULL) return NULL;
    EVP_MAC *expected = NULL;
    if (__atomic_compare_exchange_n(&cached, &expected, fetched, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) return fetched;
    EVP_MAC_free(fetched);
    return expected;
}

/// A context keyed for HMAC-SHA256, to be duplicated per message. NULL on failure.
static inline EVP_MAC_CTX *herald_hmac_sha256_keyed(const unsigned char *key, size_t key_len) {
    static const unsigned char empty_key = 0;
    EVP_MAC *algorithm = herald_hmac_algorithm();
    if (algorithm == NULL) return NULL;
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(algorithm);
    if (ctx == NULL) return NULL;
    OSSL_PARAM params[2];
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
    params[1] = OSSL_PARAM_construct_end();
    // A NULL key would silently reuse a previous key: pass a real pointer for an empty key.
    if (!EVP_MAC_init(ctx, key_len > 0 ? key : &empty_key, key_len, params)) {
        EVP_MAC_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/// HMAC-SHA256 of the concatenation a‖b‖c with a keyed context; writes 32 bytes. 1 on success.
static inline int herald_hmac_sha256(const EVP_MAC_CTX *keyed,
                                     const void *a, size_t a_len,
                                     const void *b, size_t b_len,
                                     const void *c, size_t c_len,
                                     unsigned char *out) {
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_dup(keyed);
    if (ctx == NULL) return 0;
    size_t out_len = 0;
    int ok = (a_len == 0 || EVP_MAC_update(ctx, a, a_len))
          && (b_len == 0 || EVP_MAC_update(ctx, b, b_len))
          && (c_len == 0 || EVP_MAC_update(ctx, c, c_len))
          && EVP_MAC_final(ctx, out, &out_len, 32)
          && out_len == 32;
    EVP_MAC_CTX_free(ctx);
    return ok;
}

/// HMAC-SHA256 of a‖b‖c reusing `ctx`, a context already keyed: re-initialising with a NULL
/// key keeps the key schedule (as `openssl speed` does), cheaper than duplicating a context.
static inline int herald_hmac_sha256_reuse(EVP_MAC_CTX *ctx,
                                           const void *a, size_t a_len,
                                           const void *b, size_t b_len,
                                           const void *c, size_t c_len,
                                           unsigned char *out) {
    size_t out_len = 0;
    return EVP_MAC_init(ctx, NULL, 0, NULL)
        && (a_len == 0 || EVP_MAC_update(ctx, a, a_len))
        && (b_len == 0 || EVP_MAC_update(ctx, b, b_len))
        && (c_len == 0 || EVP_MAC_update(ctx, c, c_len))
        && EVP_MAC_final(ctx, out, &out_len, 32)
        && out_len == 32;
}

/// SHA-256 of a buffer; writes 32 bytes. 1 on success.
static inline int herald_sha256(const void *data, size_t len, unsigned char *out) {
    unsigned int out_len = 0;
    return EVP_Digest(data, len, out, &out_len, EVP_sha256(), NULL) && out_len == 32;
}

#endif
