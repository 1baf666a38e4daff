//! A minimal ONNX model writer.
//!
//! Builds a computation graph in code and serialises it as an ONNX `ModelProto`. The protobuf
//! wire format is encoded by hand (varints, length-delimited fields, fixed32 floats), using the
//! field numbers of `onnx.proto`, so no protobuf crate is needed. Only the subset of
//! `ModelProto`, `GraphProto`, `NodeProto`, `TensorProto`, `ValueInfoProto` and `AttributeProto`
//! that the station's trained models need is covered: float32 and int64 tensors, single-output
//! nodes in the default operator domain, and scalar, list and string attributes.
//!
//! It also reads a model back ([`read`]) far enough to splice the part of its graph that computes chosen outputs
//! into a graph under construction ([`Graph::splice`]): the vision trainer puts the ImageNet backbone and its
//! anomaly head into one model that way.
//!
//! The vision trainer and the acoustic autoencoder use it to export their models, so that they run through the same ONNX
//! Runtime path as any other model.
//!
//! Fields are written in field-number order and repeated scalars unpacked (as `onnx.proto` is
//! proto2), so the bytes equal what the `onnx` Python package writes for the same model.

use std::collections::HashSet;

/// The value of a node attribute (`AttributeProto`).
#[derive(Clone, Debug, PartialEq)]
pub enum Attr {
    /// A single integer (`INT`).
    Int(i64),
    /// A list of integers (`INTS`).
    Ints(Vec<i64>),
    /// A single float (`FLOAT`).
    Float(f32),
    /// A list of floats (`FLOATS`).
    Floats(Vec<f32>),
    /// A string (`STRING`), e.g. a mode such as `"reflect"`.
    Str(String),
}

/// `TensorProto.DataType` values.
const FLOAT: i64 = 1;
const INT64: i64 = 7;

#[derive(Debug)]
struct Node {
    /// A node read from another model ([`Graph::splice`]), already encoded with its new names.
    spliced: Option<Vec<u8>>,
    op_type: String,
    name: String,
    inputs: Vec<String>,
    output: String,
    attrs: Vec<(String, Attr)>,
}

#[derive(Debug)]
struct Tensor {
    /// A tensor read from another model, already encoded with its new name.
    spliced: Option<Vec<u8>>,
    name: String,
    dims: Vec<i64>,
    data_type: i64,
    raw: Vec<u8>,
}

#[derive(Debug)]
struct Value {
    name: String,
    shape: Vec<i64>,
}

/// An ONNX graph under construction: nodes, initializers, graph inputs and outputs.
///
/// Every value gets a unique name: fresh names are the hint itself if unused, else the hint with
/// a numeric suffix. Initializer names are therefore deterministic for a given build order.
#[derive(Debug, Default)]
pub struct Graph {
    name: String,
    nodes: Vec<Node>,
    initializers: Vec<Tensor>,
    inputs: Vec<Value>,
    outputs: Vec<Value>,
    names: HashSet<String>,
}

impl Graph {
    /// Starts an empty graph called `name`.
    pub fn new(name: &str) -> Graph {
        Graph {
            name: name.to_string(),
            ..Graph::default()
        }
    }

    /// Declares a float32 graph input. A negative dimension is symbolic (dim_param "N").
    pub fn input(&mut self, name: &str, shape: &[i64]) -> String {
        self.claim(name);
        self.inputs.push(Value {
            name: name.to_string(),
            shape: shape.to_vec(),
        });
        name.to_string()
    }

    /// Declares a float32 graph output (the value `name` must be produced by a node). Negative
    /// dims are symbolic.
    pub fn output(&mut self, name: &str, shape: &[i64]) {
        self.outputs.push(Value {
            name: name.to_string(),
            shape: shape.to_vec(),
        });
    }

    /// A float32 initializer with a fresh unique name derived from `hint`; returns the name.
    pub fn f32s(&mut self, hint: &str, dims: &[i64], data: &[f32]) -> String {
        let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializer(hint, dims, data.len(), FLOAT, raw)
    }

    /// An int64 initializer (shapes, axes, pads); returns the name.
    pub fn i64s(&mut self, hint: &str, dims: &[i64], data: &[i64]) -> String {
        let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializer(hint, dims, data.len(), INT64, raw)
    }

    /// Adds a node with one output of a fresh unique name; returns that name. An input ""
    /// means an omitted optional input.
    pub fn op(&mut self, op_type: &str, inputs: &[&str], attrs: Vec<(&str, Attr)>) -> String {
        let output = self.fresh(op_type);
        self.push_node(op_type, inputs, attrs, output)
    }

    /// Same, but the single output gets exactly `output` as its name (for graph outputs).
    pub fn op_named(
        &mut self,
        op_type: &str,
        inputs: &[&str],
        attrs: Vec<(&str, Attr)>,
        output: &str,
    ) -> String {
        self.claim(output);
        self.push_node(op_type, inputs, attrs, output.to_string())
    }

    /// Adds the part of `model` that computes its values `outputs`, pruned of every node they do not need.
    /// Each of the model's names gets `prefix` (so nothing clashes with this graph's names), except its graph
    /// inputs, which are wired to this graph's values as `inputs` says (model input name, value here). Returns
    /// the new names of `outputs`, in order.
    pub fn splice(
        &mut self,
        model: &Imported,
        prefix: &str,
        inputs: &[(&str, &str)],
        outputs: &[&str],
    ) -> Result<Vec<String>, String> {
        let needed = model.needed(outputs)?;
        let rename = |name: &str| -> String {
            match inputs.iter().find(|(from, _)| *from == name) {
                Some((_, to)) => to.to_string(),
                None if name.is_empty() => String::new(),
                None => format!("{prefix}{name}"),
            }
        };
        for input in &model.inputs {
            if !inputs.iter().any(|(from, _)| from == input) {
                return Err(format!("the model's input {input:?} is not wired"));
            }
        }
        let mut used = HashSet::new();
        for (i, node) in model.nodes.iter().enumerate().filter(|(i, _)| needed[*i]) {
            let mut out = Vec::new();
            for (field, payload, whole) in fields(&node.raw)? {
                let text = || String::from_utf8_lossy(payload).into_owned();
                match field {
                    1 => bytes(&mut out, 1, rename(&text()).as_bytes()),
                    2 | 3 => {
                        let name = rename(&text());
                        if field == 2 {
                            self.claim(&name);
                        }
                        bytes(&mut out, field, name.as_bytes());
                    }
                    _ => out.extend_from_slice(whole),
                }
            }
            used.extend(model.nodes[i].inputs.iter().cloned());
            self.nodes.push(Node {
                spliced: Some(out),
                op_type: String::new(),
                name: String::new(),
                inputs: Vec::new(),
                output: String::new(),
                attrs: Vec::new(),
            });
        }
        for (name, raw) in &model.initializers {
            if !used.contains(name) {
                continue;
            }
            let mut out = Vec::new();
            for (field, payload, whole) in fields(raw)? {
                if field == 8 {
                    let name = rename(&String::from_utf8_lossy(payload));
                    self.claim(&name);
                    bytes(&mut out, 8, name.as_bytes());
                } else {
                    out.extend_from_slice(whole);
                }
            }
            self.initializers.push(Tensor {
                spliced: Some(out),
                name: String::new(),
                dims: Vec::new(),
                data_type: 0,
                raw: Vec::new(),
            });
        }
        Ok(outputs.iter().map(|o| rename(o)).collect())
    }

    /// Serialises the model: ir_version 8, one opset_import (domain "", version `opset`),
    /// producer_name.
    pub fn to_bytes(&self, opset: i64, producer: &str) -> Vec<u8> {
        let mut out = Vec::new();
        int(&mut out, 1, 8);
        bytes(&mut out, 2, producer.as_bytes());
        message(&mut out, 7, |g| self.encode(g));
        message(&mut out, 8, |o| {
            bytes(o, 1, b"");
            int(o, 2, opset);
        });
        out
    }

    fn initializer(
        &mut self,
        hint: &str,
        dims: &[i64],
        len: usize,
        ty: i64,
        raw: Vec<u8>,
    ) -> String {
        debug_assert_eq!(
            dims.iter().product::<i64>(),
            len as i64,
            "{hint}: dims vs data"
        );
        let name = self.fresh(hint);
        self.initializers.push(Tensor {
            spliced: None,
            name: name.clone(),
            dims: dims.to_vec(),
            data_type: ty,
            raw,
        });
        name
    }

    fn push_node(
        &mut self,
        op_type: &str,
        inputs: &[&str],
        attrs: Vec<(&str, Attr)>,
        output: String,
    ) -> String {
        self.nodes.push(Node {
            spliced: None,
            op_type: op_type.to_string(),
            // Unique: the node index is the part after the last '_'.
            name: format!("{op_type}_{}", self.nodes.len()),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            output: output.clone(),
            attrs: attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        });
        output
    }

    /// Records a caller-chosen value name; reusing one is a programming error.
    fn claim(&mut self, name: &str) {
        let new = self.names.insert(name.to_string());
        debug_assert!(new, "value name {name:?} used twice");
    }

    /// `hint` if unused, else `hint_1`, `hint_2`, ... (never "", which means "omitted").
    fn fresh(&mut self, hint: &str) -> String {
        let hint = if hint.is_empty() { "v" } else { hint };
        let mut name = hint.to_string();
        let mut n = 0;
        while !self.names.insert(name.clone()) {
            n += 1;
            name = format!("{hint}_{n}");
        }
        name
    }

    /// GraphProto: node=1, name=2, initializer=5, input=11, output=12.
    fn encode(&self, out: &mut Vec<u8>) {
        for n in &self.nodes {
            if let Some(raw) = &n.spliced {
                bytes(out, 1, raw);
                continue;
            }
            message(out, 1, |m| {
                for i in &n.inputs {
                    bytes(m, 1, i.as_bytes());
                }
                bytes(m, 2, n.output.as_bytes());
                bytes(m, 3, n.name.as_bytes());
                bytes(m, 4, n.op_type.as_bytes());
                for (name, attr) in &n.attrs {
                    message(m, 5, |a| encode_attr(a, name, attr));
                }
            });
        }
        bytes(out, 2, self.name.as_bytes());
        for t in &self.initializers {
            if let Some(raw) = &t.spliced {
                bytes(out, 5, raw);
                continue;
            }
            message(out, 5, |m| {
                for &d in &t.dims {
                    int(m, 1, d);
                }
                int(m, 2, t.data_type);
                bytes(m, 8, t.name.as_bytes());
                bytes(m, 9, &t.raw);
            });
        }
        for (field, values) in [(11, &self.inputs), (12, &self.outputs)] {
            for v in values {
                message(out, field, |m| encode_value(m, v));
            }
        }
    }
}

/// A model read back from ONNX bytes ([`read`]), enough to splice its graph into another.
#[derive(Debug)]
pub struct Imported {
    /// The default domain's opset version.
    pub opset: i64,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    nodes: Vec<ImportedNode>,
    /// Name and encoded `TensorProto` of each initializer.
    initializers: Vec<(String, Vec<u8>)>,
}

#[derive(Debug)]
struct ImportedNode {
    inputs: Vec<String>,
    outputs: Vec<String>,
    raw: Vec<u8>,
}

impl Imported {
    /// Which nodes `outputs` depend on (the graph is in topological order, as ONNX requires).
    fn needed(&self, outputs: &[&str]) -> Result<Vec<bool>, String> {
        let mut wanted: HashSet<&str> = outputs.iter().copied().collect();
        for o in outputs {
            if !self.nodes.iter().any(|n| n.outputs.iter().any(|x| x == o)) {
                return Err(format!(
                    "no node computes {o:?} (the model's outputs: {})",
                    self.outputs.join(", ")
                ));
            }
        }
        let mut needed = vec![false; self.nodes.len()];
        for (i, node) in self.nodes.iter().enumerate().rev() {
            if node.outputs.iter().any(|o| wanted.contains(o.as_str())) {
                needed[i] = true;
                wanted.extend(node.inputs.iter().map(String::as_str));
            }
        }
        Ok(needed)
    }
}

/// Reads the graph of an ONNX model: nodes, initializers, input and output names and the default opset.
/// Nodes in other domains and sub-graphs are kept as they are (their bytes are copied, not interpreted).
pub fn read(model: &[u8]) -> Result<Imported, String> {
    let mut imported = Imported {
        opset: 0,
        inputs: Vec::new(),
        outputs: Vec::new(),
        nodes: Vec::new(),
        initializers: Vec::new(),
    };
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let mut graph = None;
    for (field, payload, _) in fields(model)? {
        match field {
            7 => graph = Some(payload),
            8 => {
                let (mut domain, mut version) = (String::new(), 0);
                for (f, p, _) in fields(payload)? {
                    match f {
                        1 => domain = text(p),
                        2 => version = read_varint(p, &mut 0)? as i64,
                        _ => {}
                    }
                }
                if domain.is_empty() || domain == "ai.onnx" {
                    imported.opset = version;
                }
            }
            _ => {}
        }
    }
    let graph = graph.ok_or("no graph in the model")?;
    let name_of = |value_info: &[u8]| -> Result<String, String> {
        Ok(fields(value_info)?
            .into_iter()
            .find(|(f, _, _)| *f == 1)
            .map(|(_, p, _)| text(p))
            .unwrap_or_default())
    };
    let mut initializer_names = HashSet::new();
    for (field, payload, _) in fields(graph)? {
        match field {
            1 => {
                let mut node = ImportedNode {
                    inputs: Vec::new(),
                    outputs: Vec::new(),
                    raw: payload.to_vec(),
                };
                for (f, p, _) in fields(payload)? {
                    match f {
                        1 => node.inputs.push(text(p)),
                        2 => node.outputs.push(text(p)),
                        _ => {}
                    }
                }
                imported.nodes.push(node);
            }
            5 => {
                let name = fields(payload)?
                    .into_iter()
                    .find(|(f, _, _)| *f == 8)
                    .map(|(_, p, _)| text(p))
                    .unwrap_or_default();
                initializer_names.insert(name.clone());
                imported.initializers.push((name, payload.to_vec()));
            }
            11 => imported.inputs.push(name_of(payload)?),
            12 => imported.outputs.push(name_of(payload)?),
            _ => {}
        }
    }
    // Older exporters list initializers among the inputs too; those are not inputs to wire.
    imported.inputs.retain(|i| !initializer_names.contains(i));
    Ok(imported)
}

/// The files a model keeps initializers in (ONNX external data: `TensorProto.external_data`, key `location`),
/// each once, in order of first use.
pub fn external_data(model: &Imported) -> Result<Vec<String>, String> {
    let mut files: Vec<String> = Vec::new();
    for (_, tensor) in &model.initializers {
        for (field, entry, _) in fields(tensor)? {
            if field != 13 {
                continue;
            }
            let (mut key, mut value) = (String::new(), String::new());
            for (f, p, _) in fields(entry)? {
                match f {
                    1 => key = String::from_utf8_lossy(p).into_owned(),
                    2 => value = String::from_utf8_lossy(p).into_owned(),
                    _ => {}
                }
            }
            if key == "location" && !files.contains(&value) {
                files.push(value);
            }
        }
    }
    Ok(files)
}

fn read_varint(buf: &[u8], at: &mut usize) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*at).ok_or("truncated varint")?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Ok(v);
        }
    }
    Err("varint longer than 10 bytes".into())
}

/// (field number, payload, the whole field with its key).
type Field<'a> = (u32, &'a [u8], &'a [u8]);

/// The fields of one protobuf message: (field number, payload, the whole field with its key). The payload of a
/// varint or fixed field is its bytes as they stand.
fn fields(buf: &[u8]) -> Result<Vec<Field<'_>>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        let start = at;
        let key = read_varint(buf, &mut at)?;
        let (field, wire) = ((key >> 3) as u32, key & 7);
        let payload_start;
        match wire {
            0 => {
                payload_start = at;
                read_varint(buf, &mut at)?;
            }
            1 => {
                payload_start = at;
                at += 8;
            }
            2 => {
                let len = read_varint(buf, &mut at)? as usize;
                payload_start = at;
                at = at.checked_add(len).ok_or("length overflows")?;
            }
            5 => {
                payload_start = at;
                at += 4;
            }
            w => return Err(format!("field {field}: unsupported wire type {w}")),
        }
        if at > buf.len() {
            return Err(format!("field {field}: truncated"));
        }
        out.push((field, &buf[payload_start..at], &buf[start..at]));
    }
    Ok(out)
}

/// AttributeProto: name=1, f=2, i=3, s=4, floats=7, ints=8, type=20.
fn encode_attr(out: &mut Vec<u8>, name: &str, attr: &Attr) {
    bytes(out, 1, name.as_bytes());
    let ty = match attr {
        Attr::Float(f) => {
            float(out, 2, *f);
            1
        }
        Attr::Int(i) => {
            int(out, 3, *i);
            2
        }
        Attr::Str(s) => {
            bytes(out, 4, s.as_bytes());
            3
        }
        Attr::Floats(v) => {
            v.iter().for_each(|f| float(out, 7, *f));
            6
        }
        Attr::Ints(v) => {
            v.iter().for_each(|i| int(out, 8, *i));
            7
        }
    };
    int(out, 20, ty);
}

/// ValueInfoProto { name=1, type=2: TypeProto { tensor_type=1: { elem_type=1, shape=2:
/// TensorShapeProto { dim=1: { dim_value=1 | dim_param=2 } } } } }.
fn encode_value(out: &mut Vec<u8>, v: &Value) {
    bytes(out, 1, v.name.as_bytes());
    message(out, 2, |ty| {
        message(ty, 1, |t| {
            int(t, 1, FLOAT);
            message(t, 2, |shape| {
                for &d in &v.shape {
                    message(shape, 1, |dim| match d {
                        d if d < 0 => bytes(dim, 2, b"N"),
                        d => int(dim, 1, d),
                    });
                }
            });
        });
    });
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A field key: field number and wire type (0 varint, 2 length-delimited, 5 fixed32).
fn key(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, (u64::from(field) << 3) | u64::from(wire));
}

/// An int32/int64/enum field; negative values take ten bytes, as protobuf requires.
fn int(out: &mut Vec<u8>, field: u32, v: i64) {
    key(out, field, 0);
    varint(out, v as u64);
}

fn float(out: &mut Vec<u8>, field: u32, v: f32) {
    key(out, field, 5);
    out.extend_from_slice(&v.to_le_bytes());
}

fn bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    key(out, field, 2);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// An embedded message, encoded by `body` into a buffer of its own.
fn message(out: &mut Vec<u8>, field: u32, body: impl FnOnce(&mut Vec<u8>)) {
    let mut m = Vec::new();
    body(&mut m);
    bytes(out, field, &m);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        varint(&mut out, v);
        out
    }

    #[test]
    fn varints() {
        assert_eq!(enc(0), [0x00]);
        assert_eq!(enc(1), [0x01]);
        assert_eq!(enc(127), [0x7f]);
        assert_eq!(enc(128), [0x80, 0x01]);
        assert_eq!(enc(300), [0xac, 0x02]);
        let mut out = Vec::new();
        int(&mut out, 1, -1);
        assert_eq!(
            out,
            [
                0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01
            ]
        );
        assert_eq!(enc(-2i64 as u64).len(), 10);
    }

    #[test]
    fn scalar_fields() {
        let mut out = Vec::new();
        float(&mut out, 2, 1.0);
        bytes(&mut out, 4, b"ab");
        int(&mut out, 20, 7);
        assert_eq!(
            out,
            [0x15, 0, 0, 0x80, 0x3f, 0x22, 2, b'a', b'b', 0xa0, 0x01, 7]
        );
    }

    #[test]
    fn tiny_model_layout() {
        let mut g = Graph::new("g");
        let x = g.input("x", &[-1, 2]);
        let y = g.op_named("Relu", &[&x], vec![], "y");
        g.output(&y, &[-1, 2]);
        let b = g.to_bytes(17, "p");
        // ir_version=8, producer_name="p", then graph (field 7, length-delimited).
        assert_eq!(b[..6], [0x08, 0x08, 0x12, 0x01, b'p', 0x3a]);
        // The graph opens with its node: field 1, then input "x", output "y", name, op_type.
        let graph = &b[7..];
        assert_eq!(graph[0], 0x0a);
        assert_eq!(graph[2..8], [0x0a, 0x01, b'x', 0x12, 0x01, b'y']);
        assert_eq!(graph[8..16], *b"\x1a\x06Relu_0");
        // The model ends with opset_import { domain "", version 17 }.
        assert_eq!(b[b.len() - 6..], [0x42, 0x04, 0x0a, 0x00, 0x10, 17]);
    }

    #[test]
    fn a_read_model_splices_pruned_and_renamed() {
        let mut m = Graph::new("m");
        let x = m.input("image", &[1, 2]);
        let w = m.f32s("w", &[1, 2], &[1.0, 2.0]);
        let unused = m.f32s("unused", &[1, 2], &[3.0, 4.0]);
        let a = m.op_named("Mul", &[&x, &w], vec![], "a");
        let b = m.op_named("Add", &[&x, &unused], vec![], "b");
        m.output(&a, &[1, 2]);
        m.output(&b, &[1, 2]);
        let read = read(&m.to_bytes(17, "p")).unwrap();
        assert_eq!(read.opset, 17);
        assert_eq!(read.inputs, ["image"]);
        assert_eq!(read.outputs, ["a", "b"]);
        let mut g = Graph::new("g");
        let x = g.input("x", &[1, 2]);
        let names = g.splice(&read, "bb.", &[("image", &x)], &["a"]).unwrap();
        assert_eq!(names, ["bb.a"]);
        assert_eq!(g.nodes.len(), 1, "the Add is pruned");
        assert_eq!(g.initializers.len(), 1, "and its weight");
        let node = fields(g.nodes[0].spliced.as_ref().unwrap()).unwrap();
        let texts: Vec<(u32, &[u8])> = node.iter().map(|(f, p, _)| (*f, *p)).collect();
        assert_eq!(
            texts[..4],
            [(1, &b"x"[..]), (1, b"bb.w"), (2, b"bb.a"), (3, b"bb.Mul_0")]
        );
        assert!(
            g.splice(&read, "c.", &[], &["a"])
                .unwrap_err()
                .contains("image")
        );
        assert!(
            g.splice(&read, "c.", &[("image", &x)], &["z"])
                .unwrap_err()
                .contains("no node")
        );
        assert!(read_varint(&[0x80], &mut 0).is_err());
        assert!(fields(&[0x0a, 5, 1]).unwrap_err().contains("truncated"));
    }

    #[test]
    fn attributes_and_initializers() {
        let mut out = Vec::new();
        encode_attr(&mut out, "k", &Attr::Ints(vec![1, 300]));
        assert_eq!(
            out,
            [0x0a, 1, b'k', 0x40, 1, 0x40, 0xac, 0x02, 0xa0, 0x01, 7]
        );
        let mut g = Graph::new("g");
        assert_eq!(g.i64s("axes", &[1], &[-1]), "axes");
        assert_eq!(g.f32s("axes", &[2], &[0.0, 1.0]), "axes_1");
        assert_eq!(g.op("Abs", &["axes_1"], vec![]), "Abs");
        assert_eq!(g.op("Abs", &["Abs"], vec![]), "Abs_1");
        assert_eq!(g.initializers[0].raw, (-1i64).to_le_bytes());
        assert_eq!(g.initializers[1].data_type, FLOAT);
        assert_eq!(g.nodes[1].name, "Abs_1");
    }
}
