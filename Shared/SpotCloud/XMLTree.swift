import Foundation

#if canImport(FoundationXML)
import FoundationXML
#endif

/// A parsed XML element, by local name (namespaces ignored: AWS and moto spell the EC2
/// namespace differently).
public struct XMLNode: Sendable, Equatable {
    public var name: String
    public var text: String
    public var children: [XMLNode]

    /// The first child with this local name.
    public subscript(_ name: String) -> XMLNode? { children.first { $0.name == name } }

    /// The text of the child at this path, e.g. `value("currentState", "name")`.
    public func value(_ path: String...) -> String? {
        var node: XMLNode? = self
        for p in path { node = node?[p] }
        return node?.text
    }

    /// The `<item>`s of the child list `name` (`instancesSet`, `spotPriceHistorySet`, …).
    public func items(_ name: String) -> [XMLNode] { self[name]?.children.filter { $0.name == "item" } ?? [] }

    /// Every descendant with this local name, depth first.
    public func all(_ name: String) -> [XMLNode] {
        children.flatMap { ($0.name == name ? [$0] : []) + $0.all(name) }
    }

    public struct ParseError: Error, CustomStringConvertible {
        public var description: String
    }

    public static func parse(_ data: Data) throws -> XMLNode {
        let parser = XMLParser(data: data)
        let builder = Builder()
        parser.delegate = builder
        parser.shouldProcessNamespaces = true
        guard parser.parse(), let root = builder.root else {
            throw ParseError(description: "not XML: \(parser.parserError.map { "\($0)" } ?? "no root element")")
        }
        return root
    }

    final class Builder: NSObject, XMLParserDelegate {
        var stack: [XMLNode] = []
        var root: XMLNode?

        func parser(_ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?, qualifiedName: String?, attributes: [String: String] = [:])
        {
            let local = elementName.split(separator: ":").last.map(String.init) ?? elementName
            stack.append(XMLNode(name: local, text: "", children: []))
        }

        func parser(_ parser: XMLParser, foundCharacters string: String) {
            if !stack.isEmpty { stack[stack.count - 1].text += string }
        }

        func parser(_ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?, qualifiedName: String?) {
            guard var node = stack.popLast() else { return }
            if !node.children.isEmpty { node.text = node.text.trimmingCharacters(in: .whitespacesAndNewlines) }
            if stack.isEmpty { root = node } else { stack[stack.count - 1].children.append(node) }
        }
    }
}
