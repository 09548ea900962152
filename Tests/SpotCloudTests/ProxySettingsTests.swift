import Foundation
import SpotCloud
import Testing

/// Which requests go through a proxy, read as curl and the AWS SDKs read the environment.
@Suite struct ProxySettingsTests {
    let settings = ProxySettings(environment: [
        "HTTPS_PROXY": "http://ops:s%40cret@proxy.internal:3128", "http_proxy": "proxy.internal:8080",
        "NO_PROXY": "localhost, .corp.example, *.svc.example ,10.0.0.0/8,192.168.1.7",
    ])

    @Test func theProxyFollowsTheSchemeAndTheCredentialsAreKept() throws {
        let https = try #require(settings.proxy(for: URL(string: "https://ec2.us-east-1.amazonaws.com/")!))
        #expect(https.host == "proxy.internal" && https.port == 3128 && https.credentials == "ops:s@cret")
        #expect(settings.proxy(for: URL(string: "http://spotguard.example:8080/api")!)?.port == 8080, "lower-case names are read too")
    }

    @Test func noProxyNamesHostsDomainsAndAddresses() {
        for direct in [
            "http://localhost:1/", "https://api.corp.example/", "https://corp.example/", "https://a.b.svc.example/", "http://10.2.3.4/",
            "http://192.168.1.7:9/",
        ] {
            #expect(settings.proxy(for: URL(string: direct)!) == nil, "\(direct) is direct")
        }
        for proxied in ["https://notcorp.example/", "http://11.0.0.1/", "http://192.168.1.8/", "https://sqs.us-east-1.amazonaws.com/"] {
            #expect(settings.proxy(for: URL(string: proxied)!) != nil, "\(proxied) goes through the proxy")
        }
        #expect(ProxySettings(environment: ["HTTP_PROXY": "http://p:1", "NO_PROXY": "*"]).proxy(for: URL(string: "http://x.example/")!) == nil)
    }

    @Test func nothingSetIsDirectAndAnUnreadableProxyIsNamed() {
        #expect(ProxySettings(environment: [:]).proxy(for: URL(string: "https://ec2.us-east-1.amazonaws.com/")!) == nil)
        let wrong = ProxySettings(environment: ["HTTPS_PROXY": "socks5://proxy:1080", "HTTP_PROXY": "http://:80"])
        #expect(wrong.unreadable == ["HTTP_PROXY", "HTTPS_PROXY"] && wrong.https == nil && wrong.http == nil)
    }
}
