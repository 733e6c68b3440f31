#ifndef MYIM_AEAD_H
#define MYIM_AEAD_H

#include <stddef.h>
#include <stdint.h>

/// AES-256-GCM with a 12-byte IV and a 16-byte tag, in place, through OpenSSL's libcrypto.
///
/// One cipher context per thread and direction is kept and re-keyed for each call, so a
/// connection holds only its 32-byte key: no context per connection, and no allocation per
/// frame. Linux only (the functions are empty elsewhere: `aead.c` builds nothing).
/// Both return 1 on success and 0 on failure (for `open`, a tag that does not verify); after
/// a failed `open` the bytes at `data` are undefined and must not be used.
int myim_aes256gcm_seal(const uint8_t key[32], const uint8_t iv[12], const uint8_t *aad, size_t aad_length,
                        uint8_t *data, size_t length, uint8_t tag[16]);
int myim_aes256gcm_open(const uint8_t key[32], const uint8_t iv[12], const uint8_t *aad, size_t aad_length,
                        uint8_t *data, size_t length, const uint8_t tag[16]);

/// Initializes libcrypto and its AES-256-GCM (about 2 MB, once per process), so that a server
/// pays for it when it starts rather than with its first connection. 1 on success.
int myim_aes256gcm_prepare(void);

/// Fills `length` bytes at `out` from the kernel's CSPRNG with `getrandom(2)`: one system call
/// for a handshake's 32-byte random, where Swift's `SystemRandomNumberGenerator` makes one per
/// eight bytes. 1 on success, 0 if the kernel has no `getrandom` (the caller then falls back).
int myim_random_bytes(uint8_t *out, size_t length);

#endif
