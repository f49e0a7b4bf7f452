package dev.tidepool.tez.expr;

import com.fasterxml.jackson.databind.JsonNode;
import dev.tidepool.tez.json.Json;

import java.util.List;

/** A node of a parsed expression. */
abstract class Node {
  /** Evaluates against a record value; never returns Java null. */
  abstract JsonNode eval(JsonNode record);

  static final class Literal extends Node {
    private final JsonNode value;

    Literal(JsonNode value) {
      this.value = value;
    }

    @Override
    JsonNode eval(JsonNode record) {
      return value;
    }
  }

  static final class Field extends Node {
    private final List<String> path;

    Field(String dotted) {
      this.path = Json.splitPath(dotted);
    }

    @Override
    JsonNode eval(JsonNode record) {
      return Json.path(record, path);
    }
  }

  static final class Unary extends Node {
    private final String op;
    private final Node operand;

    Unary(String op, Node operand) {
      this.op = op;
      this.operand = operand;
    }

    @Override
    JsonNode eval(JsonNode record) {
      JsonNode v = operand.eval(record);
      return op.equals("!") ? Values.bool(!Values.truthy(v)) : Values.negate(v);
    }
  }

  static final class Binary extends Node {
    private final String op;
    private final Node left;
    private final Node right;

    Binary(String op, Node left, Node right) {
      this.op = op;
      this.left = left;
      this.right = right;
    }

    @Override
    JsonNode eval(JsonNode record) {
      switch (op) {
        case "&&":
          return Values.bool(Values.truthy(left.eval(record)) && Values.truthy(right.eval(record)));
        case "||":
          return Values.bool(Values.truthy(left.eval(record)) || Values.truthy(right.eval(record)));
        case "==":
        case "!=":
        case "<":
        case "<=":
        case ">":
        case ">=":
          return Values.compare(op, left.eval(record), right.eval(record));
        default:
          return Values.arith(op, left.eval(record), right.eval(record));
      }
    }
  }

  static final class Call extends Node {
    private final String name;
    private final Node[] args;

    Call(String name, Node[] args) {
      this.name = name;
      this.args = args;
    }

    @Override
    JsonNode eval(JsonNode record) {
      switch (name) {
        case "if":
          return Values.truthy(args[0].eval(record)) ? args[1].eval(record) : args[2].eval(record);
        case "coalesce":
          for (Node a : args) {
            JsonNode v = a.eval(record);
            if (!v.isNull()) {
              return v;
            }
          }
          return Values.NULL;
        case "len":
          return Values.len(args[0].eval(record));
        case "lower":
          return Values.lower(args[0].eval(record));
        case "upper":
          return Values.upper(args[0].eval(record));
        case "abs":
          return Values.abs(args[0].eval(record));
        case "round":
          return Values.round(args[0].eval(record));
        case "min":
          return Values.extreme(args[0].eval(record), args[1].eval(record), false);
        case "max":
          return Values.extreme(args[0].eval(record), args[1].eval(record), true);
        default:
          throw new IllegalStateException("unknown function " + name);
      }
    }
  }
}
