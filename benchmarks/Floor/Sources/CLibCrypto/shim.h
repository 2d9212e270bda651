#ifndef HERALD_FLOOR_SHIM_H
#define HERALD_FLOOR_SHIM_H
#include <stddef.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

// A context keyed for HMAC-SHA256 once at start; NULL on failure.
static inline EVP_MAC_CTX *floor_keyed_context(const void *key, size_t key_len) {
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (mac == NULL) return NULL;
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(mac);
    EVP_MAC_free(mac);
    if (ctx == NULL) return NULL;
    OSSL_PARAM params[2] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    if (!EVP_MAC_init(ctx, key, key_len, params)) { EVP_MAC_CTX_free(ctx); return NULL; }
    return ctx;
}

// HMAC-SHA256 of a||b with a copy of the keyed context (read-only, so safe from any thread).
static inline int floor_hmac_sha256(const EVP_MAC_CTX *keyed, const void *a, size_t a_len,
                                    const void *b, size_t b_len, unsigned char *out) {
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_dup(keyed);
    if (ctx == NULL) return 0;
    size_t out_len = 0;
    int ok = EVP_MAC_update(ctx, a, a_len) && EVP_MAC_update(ctx, b, b_len)
          && EVP_MAC_final(ctx, out, &out_len, 32) && out_len == 32;
    EVP_MAC_CTX_free(ctx);
    return ok;
}
#endif
