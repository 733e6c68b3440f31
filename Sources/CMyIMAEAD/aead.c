#include "myim_aead.h"

#ifdef __linux__

#include <errno.h>
#include <limits.h>
#include <sys/random.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <pthread.h>

// One context per thread and direction, set to AES-256-GCM once and then only re-keyed: the
// cipher is looked up once per thread, not once per frame. A context keeps the key schedule of
// the last frame its thread handled; it is freed (and its key material cleansed) when the
// thread exits.
static _Thread_local EVP_CIPHER_CTX *seal_context;
static _Thread_local EVP_CIPHER_CTX *open_context;
static pthread_key_t cleanup_key;
static pthread_once_t cleanup_once = PTHREAD_ONCE_INIT;

static void free_contexts(void *unused) {
    (void)unused;
    EVP_CIPHER_CTX_free(seal_context);
    EVP_CIPHER_CTX_free(open_context);
    seal_context = NULL;
    open_context = NULL;
}

static void make_cleanup_key(void) { (void)pthread_key_create(&cleanup_key, free_contexts); }

static EVP_CIPHER_CTX *prepared(EVP_CIPHER_CTX **slot, int encrypt) {
    if (*slot != NULL) return *slot;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL) return NULL;
    if (EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL, encrypt) != 1) {
        EVP_CIPHER_CTX_free(ctx);
        ERR_clear_error();
        return NULL;
    }
    (void)pthread_once(&cleanup_once, make_cleanup_key);
    (void)pthread_setspecific(cleanup_key, ctx);  // Any non-NULL value: the destructor runs at exit.
    *slot = ctx;
    return ctx;
}

int myim_aes256gcm_prepare(void) {
    return prepared(&seal_context, 1) != NULL && prepared(&open_context, 0) != NULL;
}

/// Re-keys `ctx` (its direction unchanged), feeds the additional data and transforms `data`
/// in place; the caller then finishes (and sets or reads the tag).
static int transform(EVP_CIPHER_CTX *ctx, const uint8_t *key, const uint8_t *iv, const uint8_t *aad, size_t aad_length,
                     uint8_t *data, size_t length) {
    int written = 0;
    if (ctx == NULL || aad_length > INT_MAX || length > INT_MAX) return 0;
    if (EVP_CipherInit_ex(ctx, NULL, NULL, key, iv, -1) != 1) return 0;
    if (aad_length > 0 && EVP_CipherUpdate(ctx, NULL, &written, aad, (int)aad_length) != 1) return 0;
    return length == 0 || EVP_CipherUpdate(ctx, data, &written, data, (int)length) == 1;
}

/// A failure leaves nothing on the thread's OpenSSL error queue.
static int result(int ok) {
    if (!ok) ERR_clear_error();
    return ok;
}

int myim_aes256gcm_seal(const uint8_t key[32], const uint8_t iv[12], const uint8_t *aad, size_t aad_length,
                        uint8_t *data, size_t length, uint8_t tag[16]) {
    EVP_CIPHER_CTX *ctx = prepared(&seal_context, 1);
    int written = 0;
    return result(transform(ctx, key, iv, aad, aad_length, data, length)
                  && EVP_CipherFinal_ex(ctx, data + length, &written) == 1
                  && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, tag) == 1);
}

int myim_aes256gcm_open(const uint8_t key[32], const uint8_t iv[12], const uint8_t *aad, size_t aad_length,
                        uint8_t *data, size_t length, const uint8_t tag[16]) {
    EVP_CIPHER_CTX *ctx = prepared(&open_context, 0);
    int written = 0;
    // The tag is checked by the final step, in constant time.
    return result(transform(ctx, key, iv, aad, aad_length, data, length)
                  && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, (void *)tag) == 1
                  && EVP_CipherFinal_ex(ctx, data + length, &written) == 1);
}

int myim_random_bytes(uint8_t *out, size_t length) {
    size_t filled = 0;
    while (filled < length) {
        ssize_t got = getrandom(out + filled, length - filled, 0);
        if (got > 0) {
            filled += (size_t)got;
        } else if (got < 0 && errno == EINTR) {
            continue;
        } else {
            return 0;
        }
    }
    return 1;
}

#endif
