import SpotRuntime
import Testing

extension IntegrationTests {
    /// The bearer-token syntax, checked on every agent request before any look-up.
    @Suite struct ClientTokenTests {
        @Test func aGeneratedTokenReadsBackAsItself() throws {
            for kind in [ClientToken.client, ClientToken.agent, ClientToken.enrollment] {
                let token = ClientToken.generate(kind)
                #expect(ClientToken(token.text, kind: kind) == token)
                #expect(ClientToken(token.text, kind: kind == ClientToken.client ? ClientToken.agent : ClientToken.client) == nil, "another kind")
            }
        }

        @Test func malformedTokensAreRefused() {
            let key = "abcdefgh01234567"
            let secret = String(repeating: "0a", count: 16)
            #expect(ClientToken("sgt_\(key)_\(secret)") != nil)
            #expect(ClientToken("sgt_\(key)_\(secret.uppercased())") != nil, "hex digits in either case")
            for bad in [
                "sgt_ABCDEFGH01234567_\(secret)",  // key id not lowercase
                "sgt_abcdefgh0123456_\(secret)",  // key id of 15
                "sgt_abcdefgh0123456-_\(secret)",  // key id not alphanumeric
                "sgt_ａbcdefgh0123456_\(secret)",  // a full-width letter, not ASCII
                "sgt_\(key)_\(secret.dropLast())",  // secret of 31
                "sgt_\(key)_\(String(repeating: "a", count: 129))",  // secret of 129
                "sgt_\(key)_\(secret.dropLast())g",  // not hex
                "sgt_\(key)_\(secret)_x",  // a fourth part
                "sgt__\(key)_\(secret)",  // an empty part
                "\(key)_\(secret)", "", "sgt",
            ] {
                #expect(ClientToken(bad) == nil, "\(bad)")
            }
        }

        @Test func theBearerSchemeIsReadWhateverItsCase() {
            #expect(ClientToken.bearer("Bearer abc") == "abc")
            #expect(ClientToken.bearer("bearer  abc ") == "abc")
            #expect(ClientToken.bearer("BEARER abc") == "abc")
            #expect(ClientToken.bearer("Basic abc") == nil)
            #expect(ClientToken.bearer("Bearer") == nil)
            #expect(ClientToken.bearer("Bearerabc") == nil)
            #expect(ClientToken.bearer("Bearer   ") == "", "a scheme with no token: refused by the token check")
            #expect(ClientToken.bearer("Bearer " + String(repeating: "a", count: 600)) == nil, "too long")
            #expect(ClientToken.bearer(nil) == nil)
        }
    }
}
