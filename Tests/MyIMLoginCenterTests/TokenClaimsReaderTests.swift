import Crypto
import Foundation
import JWTKit
@testable import MyIMAuth
import Testing

/// The plain reader a remembered token's payload goes through before `JSONDecoder`: it reads
/// what the login center writes exactly as the decoder does, and leaves everything else to it.
@Suite("Token claims: the plain payload reader")
struct TokenClaimsReaderTests {
    private static func encoded(_ claims: TokenClaims) throws -> Data {
        try (JSONEncoder.defaultForJWT as! JSONEncoder).encode(claims)
    }

    private static func decoded(_ payload: Data) -> TokenClaims? {
        try? (JSONDecoder.defaultForJWT as! JSONDecoder).decode(TokenClaims.self, from: payload)
    }

    private static func randomClaims(_ random: inout some RandomNumberGenerator) -> TokenClaims {
        let alphabets = ["abcxyz019._-", "é漢字😀ü", "a/b\"c\\d", "\u{7f}~ !#"]
        func text(_ random: inout some RandomNumberGenerator) -> String {
            let alphabet = Array(alphabets.randomElement(using: &random)!)
            return String((0..<Int.random(in: 0...24, using: &random)).map { _ in alphabet.randomElement(using: &random)! })
        }
        let whole = Double(Int64.random(in: 0...4_000_000_000, using: &random))
        let issued = Bool.random(using: &random) ? whole : whole + Double.random(in: 0..<1, using: &random)
        return TokenClaims(
            issuer: IssuerClaim(value: "myim:" + text(&random)), subject: SubjectClaim(value: text(&random) + "@alpha.example"),
            userID: [Int64.random(in: 0...1_000_000, using: &random), Int64.max, Int64.min, -7].randomElement(using: &random)!,
            sessionID: text(&random), deviceHash: text(&random), issuedAt: IssuedAtClaim(value: Date(timeIntervalSince1970: issued)),
            expiration: ExpirationClaim(value: Date(timeIntervalSince1970: issued + Double.random(in: 60...86_400, using: &random))))
    }

    /// Random claims, as the login center encodes them: whatever the reader takes it reads as
    /// the decoder does, and it takes every payload without escapes.
    @Test func readsWhatTheLoginCenterWritesAsTheDecoderDoes() throws {
        var random = SystemRandomNumberGenerator()
        var taken = 0
        for _ in 0..<400 {
            let claims = Self.randomClaims(&random)
            let payload = try Self.encoded(claims)
            let plain = TokenClaims(plainJSON: payload)
            if let plain {
                taken += 1
                #expect(plain == Self.decoded(payload), "\(String(decoding: payload, as: UTF8.self))")
            } else {
                #expect(payload.contains(UInt8(ascii: "\\")), "left to the decoder: \(String(decoding: payload, as: UTF8.self))")
            }
        }
        #expect(taken > 100, "the usual shape is read without the decoder (\(taken) of 400; a third have no escape)")
    }

    /// Shapes other than the login center's go to the decoder, which reads or refuses them:
    /// the reader never takes what the decoder refuses.
    @Test(arguments: [
        #"{"iss":"i","sub":"a@b","uid":1,"sid":"s","dev":"d","iat":1,"exp":2,"x":0}"#,  // an unknown key
        #"{"iss":"i","sub":"a@b","uid":1,"sid":"s","dev":"d","iat":1,"exp":2,"exp":3}"#,  // a repeated key
        #"{"iss":"i","sub":"a@b","uid":1,"sid":"s","dev":"d","iat":1}"#,  // a missing claim
        #"{"iss":"i","sub":"a\/b","uid":1,"sid":"s","dev":"d","iat":1,"exp":2}"#,  // an escape
        #"{"iss":"i","sub":"a@b","uid":1.5,"sid":"s","dev":"d","iat":1,"exp":2}"#,  // a fractional uid
        #"{"iss":"i","sub":"a@b","uid":+1,"sid":"s","dev":"d","iat":1,"exp":2}"#,  // not JSON numbers
        #"{"iss":"i","sub":"a@b","uid":01,"sid":"s","dev":"d","iat":1,"exp":2}"#,
        #"{"iss":"i","sub":"a@b","uid":1,"sid":"s","dev":"d","iat":1.,"exp":2}"#,
        #"{"iss":"i","sub":"a@b","uid":1,"sid":"s","dev":"d","iat":.5,"exp":2}"#,
        #"{"iss":"i","sub":"a@b","uid":99999999999999999999,"sid":"s","dev":"d","iat":1,"exp":2}"#,
        #"{"iss":"i","sub":{"a":1},"uid":1,"sid":"s","dev":"d","iat":1,"exp":2}"#,  // nested
        #"{"iss":"i","sub":"a@b","uid":1,"sid":"s","dev":"d","iat":1,"exp":2} x"#,  // trailing bytes
        #"{"iss":"i","sub":"a@b","uid":1,"sid":"s","dev":"d","iat":1,"exp":2,}"#,  // a trailing comma
        #"{"iss":"i","sub":"a@b","uid":1,"sid":"s","dev":"d","iat":1,"exp":2"#,  // cut short
        #"{"iss":"i","sub":"a@b","uid":1,"sid":"s","dev":"d","iat":1e400,"exp":2}"#,  // not finite
    ])
    func otherShapesAreLeftToTheDecoder(json: String) {
        #expect(TokenClaims(plainJSON: Data(json.utf8)) == nil)
    }

    /// Invalid UTF-8 in a string is left to the decoder (which refuses it), as is a control byte.
    @Test func invalidTextIsLeftToTheDecoder() {
        for bad in [[0xC3, 0x28], [0xFF], [0x0A]] as [[UInt8]] {
            let payload = Data(#"{"iss":"i","sub":""#.utf8) + bad + Data(#"","uid":1,"sid":"s","dev":"d","iat":1,"exp":2}"#.utf8)
            #expect(TokenClaims(plainJSON: payload) == nil)
        }
        let spaced = Data(" { \"iss\" : \"i\" ,\n\"sub\":\"a@b\",\"uid\": -3 ,\"sid\":\"s\",\"dev\":\"d\",\"iat\":1.25e2,\"exp\":2E3 } ".utf8)
        #expect(TokenClaims(plainJSON: spaced) == Self.decoded(spaced), "whitespace and exponents, as JSON allows them")
        #expect(TokenClaims(plainJSON: spaced) != nil)
    }

    /// A remembered token (its payload read by the plain reader) gives the claims its first,
    /// full verification gave.
    @Test func aRememberedTokenGivesTheClaimsOfItsFirstVerification() async throws {
        let key = Curve25519.Signing.PrivateKey()
        let issuer = await TokenIssuer(signingKey: key, issuer: "myim:test")
        let verifier = await TokenVerifier(publicKey: key.publicKey, issuer: "myim:test")
        let now = Date()
        for address in ["alice@alpha.example", "bö@alpha.example", "x/y@alpha.example"] {
            let (token, issued) = try await issuer.issue(address: address, userID: 42, sessionID: UUID().uuidString, device: "d", now: now)
            let first = try await verifier.verify(token, now: now)
            let again = try verifier.verifyRemembered(token, now: now)
            #expect(first == issued)
            #expect(again == issued)
        }
        #expect(verifier.signatureVerifications == 3)
    }
}
