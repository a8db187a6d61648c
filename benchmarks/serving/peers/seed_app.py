# The seed article's app.py, verbatim (only its indentation, lost in the article, restored).
# ruff: noqa
# fmt: off
import joblib
from flask import Flask, request, jsonify
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
# --- 1. Train and Save a Model (Offline Step) ---
# In a real project, this would be a separate script.
X, y = make_classification(n_samples=1000, n_features=20, random_state=42)
model = LogisticRegression(solver='liblinear')
model.fit(X, y)
# Save the trained model to a file
joblib.dump(model, 'model.pkl')
print("Model trained and saved to model.pkl")
# --- 2. Build a Flask API to Serve the Model ---
app = Flask(__name__)
# Load the model when the app starts
try:
    production_model = joblib.load('model.pkl')
    print("Model loaded successfully.")
except FileNotFoundError:
    production_model = None
    print("Model file not found. API will not be able to make predictions.")
@app.route('/predict', methods=['POST'])
def predict():
    if production_model is None:
        return jsonify({'error': 'Model not loaded'}), 500
    # Get the JSON data from the request
    data = request.get_json()
    # We expect a list or list of lists for the features
    features = data.get('features')
    if features is None or not isinstance(features, list):
        return jsonify({'error': 'Missing or invalid "features" key'}), 400
    # Make prediction
    try:
        prediction = production_model.predict(features)
        return jsonify({'prediction': prediction.tolist()})
    except Exception as e:
        return jsonify({'error': str(e)}), 400
# To run this app:
# 1. Install Flask: pip install Flask
# 2. Save the code as a Python file (e.g., app.py)
# 3. Run from your terminal: flask run
# 4. You can then send POST requests to http://127.0.0.1:5000/predict
# Example request using curl:
# curl -X POST -H "Content-Type: application/json" -d '{"features": [[0.1, -0.5, ...]]}' http://127.0.0.1:5000/predict
