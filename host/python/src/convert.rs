//! JSON values across the boundary: [`to_py`] builds Python objects
//! (`dict`, `list`, `str`, `int`, `float`, `bool`, `None`) from a
//! [`serde_json::Value`]; [`from_py`] reads one back, refusing what JSON
//! cannot hold with an error naming where it was.

use pyo3::IntoPyObjectExt;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde_json::{Map, Number, Value};

/// The deepest nesting [`from_py`] reads (serde_json's own limit).
pub const MAX_DEPTH: usize = 128;

/// `value` as a Python object.
pub fn to_py<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => i.into_bound_py_any(py)?,
            (None, Some(u)) => u.into_bound_py_any(py)?,
            _ => n.as_f64().unwrap_or(f64::NAN).into_bound_py_any(py)?,
        },
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(to_py(py, item)?)?;
            }
            list.into_any()
        }
        Value::Object(map) => to_py_dict(py, map)?.into_any(),
    })
}

/// `map` as a Python `dict`.
pub fn to_py_dict<'py>(py: Python<'py>, map: &Map<String, Value>) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    for (key, item) in map {
        dict.set_item(key, to_py(py, item)?)?;
    }
    Ok(dict)
}

/// Why a value is not JSON, and where (`[\"rows\"][3]`).
struct NotJson {
    path: Vec<String>,
    message: String,
    type_error: bool,
}

/// Python object `obj` as JSON; `what` names it in errors (`initial_data`).
///
/// # Errors
/// `TypeError` for a value of a type JSON has no place for (a `set`, an
/// object, a dict key that is not a `str`); `ValueError` for a float that is
/// not finite, an int beyond 64 bits, or nesting deeper than [`MAX_DEPTH`].
pub fn from_py(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Value> {
    read(obj, 0).map_err(|e| {
        let path: String = e.path.iter().rev().map(String::as_str).collect();
        let message = format!("{what}{path}: {}", e.message);
        if e.type_error { PyTypeError::new_err(message) } else { PyValueError::new_err(message) }
    })
}

/// [`from_py`] for an object that must be a `dict` (`None`: empty).
pub fn from_py_map(obj: Option<&Bound<'_, PyAny>>, what: &str) -> PyResult<Map<String, Value>> {
    match obj {
        None => Ok(Map::new()),
        Some(obj) if obj.is_none() => Ok(Map::new()),
        Some(obj) => match from_py(obj, what)? {
            Value::Object(map) => Ok(map),
            _ => Err(PyTypeError::new_err(format!(
                "{what}: expected a dict, got {}",
                obj.get_type().name().map(|n| n.to_string()).unwrap_or_default()
            ))),
        },
    }
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".to_owned())
}

fn read(obj: &Bound<'_, PyAny>, depth: usize) -> Result<Value, NotJson> {
    let fail = |message: String, type_error: bool| NotJson { path: Vec::new(), message, type_error };
    if depth > MAX_DEPTH {
        return Err(fail(format!("nested deeper than {MAX_DEPTH} levels"), false));
    }
    if obj.is_none() {
        return Ok(Value::Null);
    }
    // `bool` before `int`: it is a subclass.
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if obj.is_instance_of::<PyInt>() {
        if let Ok(i) = obj.extract::<i64>() {
            return Ok(Value::from(i));
        }
        if let Ok(u) = obj.extract::<u64>() {
            return Ok(Value::from(u));
        }
        return Err(fail("an int beyond 64 bits (JSON numbers here are 64-bit)".to_owned(), false));
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        let v = f.value();
        return Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| fail(format!("{v} is not a finite number (JSON has no NaN or infinity)"), false));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return s.to_cow().map(|s| Value::String(s.into_owned())).map_err(|e| fail(e.to_string(), false));
    }
    if let Ok(dict) = obj.cast::<PyDict>() {
        let mut map = Map::new();
        for (key, item) in dict.iter() {
            let Ok(key) = key.cast::<PyString>() else {
                return Err(fail(format!("a dict key of type {} (JSON keys are str)", type_name(&key)), true));
            };
            let key = key.to_cow().map_err(|e| fail(e.to_string(), false))?.into_owned();
            let value = read(&item, depth + 1).map_err(|mut e| {
                e.path.push(format!("[{key:?}]"));
                e
            })?;
            map.insert(key, value);
        }
        return Ok(Value::Object(map));
    }
    let items: Option<Vec<Bound<'_, PyAny>>> = if let Ok(list) = obj.cast::<PyList>() {
        Some(list.iter().collect())
    } else if let Ok(tuple) = obj.cast::<PyTuple>() {
        Some(tuple.iter().collect())
    } else {
        None
    };
    match items {
        Some(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                out.push(read(item, depth + 1).map_err(|mut e| {
                    e.path.push(format!("[{i}]"));
                    e
                })?);
            }
            Ok(Value::Array(out))
        }
        None => Err(fail(
            format!(
                "a value of type {} (JSON holds dict, list, tuple, str, int, float, bool and None)",
                type_name(obj)
            ),
            true,
        )),
    }
}
