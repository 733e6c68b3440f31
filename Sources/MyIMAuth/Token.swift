import Crypto
import Foundation
import JWTKit
import MyIMSecureChannel
import MyIMWire
import Synchronization

/// What a MyIM token says: who, which session, from which device, and until when.
///
/// Signed by the login center with EdDSA (Ed25519); every endpoint verifies it offline with
/// the login center's token public key. The claims are checked by ``TokenVerifier`` against
/// its own clock, not by jwt-kit, so that tests can move time.
public struct TokenClaims: JWTPayload, Equatable {
    /// `iss`: the cluster's login center, e.g. `myim:myim-local`.
    public var issuer: IssuerClaim
    /// `sub`: the user's address, `user@domain`.
    public var subject: SubjectClaim
    /// `uid`: the user id in the login center's database.
    public var userID: Int64
    /// `sid`: this login's session id.
    public var sessionID: String
    /// `dev`: SHA-256 (hex, 32 digits) of the device fingerprint the login came from.
    public var deviceHash: String
    /// `iat`.
    public var issuedAt: IssuedAtClaim
    /// `exp`: at most 24 hours after `iat`.
    public var expiration: ExpirationClaim

    enum CodingKeys: String, CodingKey {
        case issuer = "iss", subject = "sub", userID = "uid", sessionID = "sid", deviceHash = "dev"
        case issuedAt = "iat", expiration = "exp"
    }

    /// The address the token was issued to.
    public var address: String { subject.value }

    /// Claims are checked by ``TokenVerifier`` with an injectable clock.
    public func verify(using algorithm: some JWTAlgorithm) async throws {}

    /// The `dev` claim of a device fingerprint.
    public static func deviceHash(of fingerprint: String) -> String {
        String(SHA256.hash(data: Data(fingerprint.utf8)).hexString.prefix(32))
    }
}

extension TokenClaims {
    /// The claims of a payload of the shape the login center writes, read in one pass without
    /// `JSONDecoder` (a remembered token is decoded at every reconnect, and the decoder is most
    /// of what that costs): one flat object of the seven claims, each once, in any order; the
    /// four strings without escapes and valid UTF-8, `uid` an integer, `iat` and `exp` plain
    /// decimal numbers. `nil` for anything else, which `JSONDecoder` then reads (or refuses).
    /// Only a payload whose signature verified reaches it.
    init?(plainJSON payload: Data) {
        let read = payload.withUnsafeBytes { bytes -> TokenClaims? in
            var reader = PlainClaimsReader(bytes: bytes)
            return reader.claims()
        }
        guard let read else { return nil }
        self = read
    }
}

/// A cursor over a JSON object of the claims' shape; every method returns nil (or false) at
/// the first byte it does not expect, leaving the payload to `JSONDecoder`.
private struct PlainClaimsReader {
    let bytes: UnsafeRawBufferPointer
    var index = 0

    init(bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
    }

    mutating func claims() -> TokenClaims? {
        var issuer, subject, session, device: String?
        var userID: Int64?
        var issuedAt, expiration: Double?
        guard consume(UInt8(ascii: "{")) else { return nil }
        repeat {
            guard let key = string(), consume(UInt8(ascii: ":")) else { return nil }
            switch key {
            case "iss" where issuer == nil: issuer = string()
            case "sub" where subject == nil: subject = string()
            case "sid" where session == nil: session = string()
            case "dev" where device == nil: device = string()
            case "uid" where userID == nil: userID = number().flatMap { Int64($0) }
            case "iat" where issuedAt == nil: issuedAt = number().flatMap { Double($0) }
            case "exp" where expiration == nil: expiration = number().flatMap { Double($0) }
            default: return nil  // Unknown or repeated.
            }
        } while consume(UInt8(ascii: ","))
        guard consume(UInt8(ascii: "}")) else { return nil }
        skipSpace()
        guard index == bytes.count, let issuer, let subject, let session, let device, let userID, let issuedAt, let expiration,
              issuedAt.isFinite, expiration.isFinite
        else { return nil }
        return TokenClaims(
            issuer: IssuerClaim(value: issuer), subject: SubjectClaim(value: subject), userID: userID, sessionID: session,
            deviceHash: device, issuedAt: IssuedAtClaim(value: Date(timeIntervalSince1970: issuedAt)),
            expiration: ExpirationClaim(value: Date(timeIntervalSince1970: expiration)))
    }

    private mutating func skipSpace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    private mutating func consume(_ byte: UInt8) -> Bool {
        skipSpace()
        guard index < bytes.count, bytes[index] == byte else { return false }
        index += 1
        return true
    }

    /// A string without escapes or control characters, valid UTF-8.
    private mutating func string() -> String? {
        guard consume(UInt8(ascii: "\"")) else { return nil }
        let start = index
        while index < bytes.count, bytes[index] != UInt8(ascii: "\"") {
            guard bytes[index] != UInt8(ascii: "\\"), bytes[index] >= 0x20 else { return nil }
            index += 1
        }
        guard index < bytes.count else { return nil }
        defer { index += 1 }
        return String(validating: UnsafeRawBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
    }

    /// The text of a JSON number: `-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?`.
    private mutating func number() -> String? {
        skipSpace()
        let start = index
        _ = take(UInt8(ascii: "-"))
        if !take(UInt8(ascii: "0")) {
            guard index < bytes.count, (UInt8(ascii: "1")...UInt8(ascii: "9")).contains(bytes[index]) else { return nil }
            skipDigits()
        }
        if take(UInt8(ascii: ".")) {
            guard skipDigits() else { return nil }
        }
        if take(UInt8(ascii: "e")) || take(UInt8(ascii: "E")) {
            _ = take(UInt8(ascii: "+")) || take(UInt8(ascii: "-"))
            guard skipDigits() else { return nil }
        }
        return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
    }

    private mutating func take(_ byte: UInt8) -> Bool {
        guard index < bytes.count, bytes[index] == byte else { return false }
        index += 1
        return true
    }

    /// Skips digits; whether there was one.
    @discardableResult
    private mutating func skipDigits() -> Bool {
        let start = index
        while index < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) { index += 1 }
        return index > start
    }
}

/// Why a token was refused; each reason has its own ``ErrorCode`` (32x).
public struct TokenError: Error, Hashable, Sendable, CustomStringConvertible {
    public var code: ErrorCode
    public var message: String

    public init(_ code: ErrorCode, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "token error \(code): \(message)" }
}

/// The longest a token may live: the seed's daily key renewal.
public let maximumTokenLifetime: TimeInterval = 24 * 60 * 60

/// Issues tokens; lives in the login center.
public struct TokenIssuer: Sendable {
    private let keys: JWTKeyCollection
    public let issuer: String
    public let lifetime: TimeInterval

    /// - Parameter lifetime: seconds, clamped to 60 s ... 24 h.
    public init(signingKey: Curve25519.Signing.PrivateKey, issuer: String, lifetime: TimeInterval = maximumTokenLifetime) async {
        keys = JWTKeyCollection()
        await keys.add(eddsa: EdDSA.PrivateKey(backing: signingKey), kid: "myim-token")
        self.issuer = issuer
        self.lifetime = min(max(lifetime, 60), maximumTokenLifetime)
    }

    /// A signed token for one login. `exp` and `iat` are whole seconds.
    public func issue(address: String, userID: Int64, sessionID: String, device: String, now: Date) async throws -> (token: String, claims: TokenClaims) {
        let issued = Date(timeIntervalSince1970: now.timeIntervalSince1970.rounded(.down))
        let claims = TokenClaims(
            issuer: IssuerClaim(value: issuer), subject: SubjectClaim(value: address), userID: userID, sessionID: sessionID,
            deviceHash: TokenClaims.deviceHash(of: device), issuedAt: IssuedAtClaim(value: issued),
            expiration: ExpirationClaim(value: issued.addingTimeInterval(lifetime)))
        return (try await keys.sign(claims, kid: "myim-token"), claims)
    }
}

/// Verifies tokens offline with the login center's public key; endpoints hold one.
///
/// A token's signature is checked once: the hash of a token that verified is remembered in a
/// bounded set (``VerifiedTokens``), so that a client reconnecting with the same token costs a
/// SHA-256 and the token's decoding instead of an Ed25519 verification as well. The checks that
/// depend on the time (not yet valid, expired) run on every use, remembered or not.
public struct TokenVerifier: Sendable {
    private let keys: JWTKeyCollection
    private let verified: VerifiedTokens
    private let payloadDecoder: any JWTJSONDecoder = .defaultForJWT
    public let issuer: String
    /// Tolerated clock difference between the login center and this process.
    public let leeway: TimeInterval
    /// Tokens longer than this are refused before any parsing.
    public static let maximumTokenLength = 4096
    /// How many verified tokens a verifier remembers by default.
    public static let defaultMemoCapacity = 65_536

    /// - Parameter memoCapacity: verified tokens remembered (0: verify every token in full).
    public init(publicKey: Curve25519.Signing.PublicKey, issuer: String, leeway: TimeInterval = 60, memoCapacity: Int = defaultMemoCapacity) async {
        keys = JWTKeyCollection()
        await keys.add(eddsa: EdDSA.PublicKey(backing: publicKey), kid: "myim-token")
        verified = VerifiedTokens(capacity: memoCapacity)
        self.issuer = issuer
        self.leeway = leeway
    }

    /// Signature verifications done so far (tokens found in the memo are not counted).
    public var signatureVerifications: Int { verified.verifications }

    /// The token's claims if it is well formed, signed by the login center, issued by
    /// `issuer`, and valid at `now`; a ``TokenError`` saying which of these failed otherwise.
    public func verify(_ token: String, now: Date) async throws(TokenError) -> TokenClaims {
        let key = try Self.key(of: token)
        if let claims = try remembered(token, key: key, now: now) { return claims }
        guard token.split(separator: ".", omittingEmptySubsequences: false).count == 3 else {
            throw TokenError(.tokenMalformed, "a token is three base64url parts separated by dots")
        }
        let claims: TokenClaims
        verified.countVerification()
        do {
            claims = try await keys.verify(token, as: TokenClaims.self)
        } catch let error as JWTError where error.errorType == .signatureVerificationFailed {
            throw TokenError(.tokenBadSignature, "the token's signature does not verify with the login center's key")
        } catch {
            throw TokenError(.tokenMalformed, "the token cannot be decoded: \(Self.reason(error))")
        }
        guard claims.issuer.value == issuer else {
            throw TokenError(.tokenWrongIssuer, "the token was issued by '\(claims.issuer.value)', not '\(issuer)'")
        }
        guard claims.expiration.value.timeIntervalSince(claims.issuedAt.value) <= maximumTokenLifetime else {
            throw TokenError(.tokenMalformed, "the token claims to live longer than 24 hours")
        }
        try checkTimes(of: claims, now: now)
        verified.insert(key)
        return claims
    }

    /// What ``verify(_:now:)`` says of a token whose signature verified before, without
    /// waiting; `nil` when the token is not remembered (then only `verify` can tell).
    public func verifyRemembered(_ token: String, now: Date) throws(TokenError) -> TokenClaims? {
        try remembered(token, key: Self.key(of: token), now: now)
    }

    private static func key(of token: String) throws(TokenError) -> UInt128 {
        guard token.utf8.count <= Self.maximumTokenLength else {
            throw TokenError(.tokenTooLong, "a token is at most \(Self.maximumTokenLength) bytes, this one is \(token.utf8.count)")
        }
        return VerifiedTokens.key(of: token)
    }

    private func remembered(_ token: String, key: UInt128, now: Date) throws(TokenError) -> TokenClaims? {
        guard verified.contains(key) else { return nil }
        // These very bytes verified before: only their payload is decoded again, by the plain
        // reader when it has the login center's shape, else by the JSON decoder.
        let claims: TokenClaims
        do {
            let payload = try Self.payload(of: token)
            claims = try TokenClaims(plainJSON: payload) ?? payloadDecoder.decode(TokenClaims.self, from: payload)
        } catch {
            throw TokenError(.tokenMalformed, "the token cannot be decoded: \(Self.reason(error))")
        }
        try checkTimes(of: claims, now: now)
        return claims
    }

    /// The second of a token's three parts, base64url-decoded (of a token that verified).
    private static func payload(of token: String) throws(TokenError) -> Data {
        let parts = token.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        var base64 = parts.count == 3 ? parts[1].map { byte -> UInt8 in
            switch byte {
            case UInt8(ascii: "-"): UInt8(ascii: "+")
            case UInt8(ascii: "_"): UInt8(ascii: "/")
            default: byte
            }
        } : []
        base64.append(contentsOf: repeatElement(UInt8(ascii: "="), count: (4 - base64.count % 4) % 4))
        guard parts.count == 3, let payload = Data(base64Encoded: Data(base64)) else {
            throw TokenError(.tokenMalformed, "the token's payload is not base64url")
        }
        return payload
    }

    /// What changes with the clock: refused if issued in the future or expired at `now`.
    private func checkTimes(of claims: TokenClaims, now: Date) throws(TokenError) {
        guard claims.issuedAt.value.timeIntervalSince(now) <= leeway else {
            throw TokenError(.tokenNotYetValid, "the token was issued in the future (check the clocks)")
        }
        guard now < claims.expiration.value.addingTimeInterval(leeway) else {
            throw TokenError(.tokenExpired, "the token expired at \(claims.expiration.value); log in again")
        }
    }

    private static func reason(_ error: any Error) -> String {
        if let error = error as? JWTError { return error.reason ?? error.errorType.description }
        return String(describing: error)
    }
}

/// Tokens whose signature, issuer and lifetime were checked, each by the first 128 bits of the
/// SHA-256 of its bytes (never by `String` equality, which treats canonically equivalent but
/// different bytes as equal). Only the hash is kept, 16 bytes a token, so that remembering the
/// token of every connection an endpoint holds costs little against the connection itself.
///
/// Bounded by two generations: new entries go into the current one; when it holds half the
/// capacity it becomes the previous one and the one before is dropped. A token found in the
/// previous generation moves to the current one, so tokens in use stay while tokens not seen for
/// a generation go, without a list to maintain per lookup.
final class VerifiedTokens: Sendable {
    private struct State {
        var current: Set<UInt128> = []
        var previous: Set<UInt128> = []
        var verifications = 0
    }

    private let generation: Int
    private let state = Mutex(State())

    init(capacity: Int) {
        generation = max(0, capacity / 2)
    }

    static func key(of token: String) -> UInt128 {
        SHA256.hash(data: Data(token.utf8)).withUnsafeBytes { $0.loadUnaligned(as: UInt128.self) }
    }

    var verifications: Int { state.withLock { $0.verifications } }

    func countVerification() {
        state.withLock { $0.verifications += 1 }
    }

    func contains(_ key: UInt128) -> Bool {
        state.withLock { state in
            if state.current.contains(key) { return true }
            guard state.previous.remove(key) != nil else { return false }
            Self.insert(key, into: &state, generation: generation)
            return true
        }
    }

    func insert(_ key: UInt128) {
        guard generation > 0 else { return }
        state.withLock { Self.insert(key, into: &$0, generation: generation) }
    }

    private static func insert(_ key: UInt128, into state: inout State, generation: Int) {
        guard generation > 0 else { return }
        if state.current.count >= generation {
            state.previous = state.current
            state.current = []
        }
        state.current.insert(key)
    }
}
