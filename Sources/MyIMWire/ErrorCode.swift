/// A numeric error code shared by every MyIM component and carried on the wire
/// (in message 20 `error`, 11 `login failed`, 13 `register failed` and 1006 `hello error`).
///
/// Codes are grouped by the hundred: 1xx wire format, 2xx secure channel, 3xx and up for
/// the services built on top. The table in `docs/PROTOCOL.md` lists every code.
public struct ErrorCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }
    public init(_ rawValue: Int) { self.rawValue = rawValue }
    public var description: String { String(rawValue) }
}

extension ErrorCode {
    // 1xx: layer 2 and 3 decoding.
    public static let frameTooLarge = ErrorCode(100)
    public static let nestingTooDeep = ErrorCode(101)
    public static let containerTooLong = ErrorCode(102)
    public static let tooManyValues = ErrorCode(103)
    public static let stringTooLong = ErrorCode(104)
    public static let bytesTooLong = ErrorCode(105)
    public static let keyTooLong = ErrorCode(106)
    public static let emptyKey = ErrorCode(107)
    public static let invalidUTF8 = ErrorCode(108)
    public static let unknownValueType = ErrorCode(109)
    public static let badScalarLength = ErrorCode(110)
    public static let badBoolValue = ErrorCode(111)
    public static let truncated = ErrorCode(112)
    public static let duplicateKey = ErrorCode(113)
    public static let lengthMismatch = ErrorCode(114)
    public static let missingKey = ErrorCode(115)
    public static let wrongValueType = ErrorCode(116)
    public static let unknownMessageType = ErrorCode(117)
    public static let invalidField = ErrorCode(118)

    // 2xx: the secure channel.
    public static let unsupportedVersion = ErrorCode(200)
    public static let unexpectedMessage = ErrorCode(201)
    public static let badSignature = ErrorCode(202)
    public static let serverKeyMismatch = ErrorCode(203)
    public static let serverKeyChanged = ErrorCode(204)
    public static let badKeyShare = ErrorCode(205)
    public static let decryptionFailed = ErrorCode(206)
    public static let unexpectedSequence = ErrorCode(207)
    public static let badPadding = ErrorCode(208)
    public static let finishedMismatch = ErrorCode(209)
    public static let handshakeTimeout = ErrorCode(210)
    public static let notEstablished = ErrorCode(211)
    public static let sequenceExhausted = ErrorCode(212)
    public static let unsupportedKeyType = ErrorCode(213)

    // 3xx: accounts and logins (login center).
    public static let invalidName = ErrorCode(300)
    public static let nameTaken = ErrorCode(301)
    public static let weakPassword = ErrorCode(302)
    public static let invalidCredentials = ErrorCode(303)
    public static let rateLimited = ErrorCode(304)
    public static let unknownDomain = ErrorCode(305)
    public static let serverBusy = ErrorCode(306)
    public static let invalidDevice = ErrorCode(307)
    public static let notLoggedIn = ErrorCode(308)
    public static let notSupportedHere = ErrorCode(309)
    public static let internalError = ErrorCode(310)

    // 32x: tokens.
    public static let tokenMalformed = ErrorCode(320)
    public static let tokenBadSignature = ErrorCode(321)
    public static let tokenExpired = ErrorCode(322)
    public static let tokenWrongIssuer = ErrorCode(323)
    public static let tokenNotYetValid = ErrorCode(324)
    public static let tokenTooLong = ErrorCode(325)

    // 33x: messaging (endpoints and the center).
    public static let centerUnavailable = ErrorCode(330)
    public static let tooManyConnections = ErrorCode(331)
    public static let unknownRecipient = ErrorCode(332)
    public static let contentTooLarge = ErrorCode(333)
    public static let directoryUnavailable = ErrorCode(334)
    public static let notAMember = ErrorCode(335)
    public static let groupFull = ErrorCode(336)
    public static let invalidGroupName = ErrorCode(337)
    public static let notGroupOwner = ErrorCode(338)
    public static let alreadyAMember = ErrorCode(339)
}
